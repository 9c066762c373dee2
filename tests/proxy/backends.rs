//! Backends over TLS and h2, from ingress-nginx's annotations
//! (`backend-protocol`, `proxy-ssl-*`, `proxy-body-size`,
//! `proxy-read-timeout`): real rustls backends that require a client
//! certificate, a real tonic gRPC server and client, and clients that
//! present certificates to the proxy.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status, Streaming};

use crate::grpc_raw::Raw;
use crate::support::*;

const SUFFIX: &str = "backends.test";
const BACKEND_NAME: &str = "orders.internal";
const NGINX: &str = "nginx.ingress.kubernetes.io/";

// ---------------------------------------------------------------------------
// The edge: a proxy whose hosts require a client certificate
// ---------------------------------------------------------------------------

struct Edge {
    proxy: Proxy,
    server_ca: Ca,
    /// A client certificate the hosts' policy accepts.
    client: Leaf,
    _dir: tempfile::TempDir,
}

impl Edge {
    /// The proxy with one Ingress per `(name, backend, annotations)`, each
    /// for host `NAME.backends.test`, all under a policy that requires a
    /// client certificate; `secrets` are written as well.
    fn start(ingresses: &[(&str, SocketAddr, Value)], secrets: &[Value]) -> Edge {
        let server_ca = Ca::new("backends test server CA");
        let client_ca = Ca::new("backends test client CA");
        let server = server_ca.server(&[&format!("*.{SUFFIX}")], "edge", 2035);
        let client = client_ca.client(ClientSpec::named("grpc-client"));
        let dir = tempfile::tempdir().unwrap();
        let mut docs = vec![tls_secret("edge-tls", &server.cert_pem, &server.key_pem)];
        docs.extend(secrets.iter().cloned());
        write_json(dir.path(), "secrets.json", &docs);
        write_yaml(
            dir.path(),
            "policy.yaml",
            &[policy(
                "clients",
                json!({"mode": "Require", "trustAnchors": inline(&[&client_ca.pem()])}),
            )],
        );
        let mut docs = Vec::new();
        for (name, addr, annotations) in ingresses {
            let svc = format!("{name}-svc");
            docs.push(service(&svc, &[*addr]));
            let host = format!("{name}.{SUFFIX}");
            let paths: &[(&str, &str, &str)] = &[("Prefix", "/", &svc)];
            let mut ing = ingress(
                name,
                Some("clients"),
                "edge-tls",
                &[Rule { host: &host, paths }],
            );
            for (k, v) in annotations.as_object().unwrap() {
                ing["metadata"]["annotations"][format!("{NGINX}{k}")] = v.clone();
            }
            docs.push(ing);
        }
        write_json(dir.path(), "app.json", &docs);
        // One worker, so one upstream pool: connection reuse is visible.
        let proxy = Proxy::start(dir.path(), &["--workers", "1"]);
        Edge {
            proxy,
            server_ca,
            client,
            _dir: dir,
        }
    }

    fn cfg(&self, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
        client_config(&self.server_ca, Some(&self.client), &[alpn])
    }

    async fn get(&self, name: &str, path: &str) -> Resp {
        get_once(
            self.proxy.https,
            &format!("{name}.{SUFFIX}"),
            self.cfg(b"http/1.1"),
            path,
        )
        .await
        .unwrap()
    }

    fn upstream_requests(&self, protocol: &str, result: &str) -> f64 {
        self.proxy.metric(
            "tlsward_proxy_upstream_requests_total",
            &[("protocol", protocol), ("result", result)],
        )
    }
}

// ---------------------------------------------------------------------------
// Backends
// ---------------------------------------------------------------------------

type Handler<B> = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<B>> + Send>> + Send + Sync,
>;

/// A backend on 127.0.0.1:0, on its own thread and runtime: TLS when
/// `tls` is given, h2 (with prior knowledge, or after TLS) when `h2`.
struct Backend {
    addr: SocketAddr,
    /// TCP connections accepted so far.
    connections: Arc<std::sync::atomic::AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    fn start<B>(tls: Option<Arc<rustls::ServerConfig>>, h2: bool, handler: Handler<B>) -> Self
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
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
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let (tls, handler) = (tls.clone(), handler.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let f = handler(req);
                            async move { Ok::<_, Infallible>(f.await) }
                        });
                        match tls {
                            None => serve_io(TokioIo::new(tcp), h2, svc).await,
                            Some(cfg) => {
                                // A refused handshake (no client certificate) just ends.
                                if let Ok(s) =
                                    tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await
                                {
                                    serve_io(TokioIo::new(s), h2, svc).await
                                }
                            }
                        }
                    });
                }
            });
            rt.shutdown_timeout(Duration::from_millis(100));
        });
        Backend {
            addr,
            connections,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

async fn serve_io<I, S, B>(io: I, h2: bool, svc: S)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if h2 {
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, svc)
            .await;
    } else {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await;
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TLS server configuration for a backend named only `BACKEND_NAME`,
/// signed by `ca`; requiring a client certificate from `clients` when given.
fn backend_tls(ca: &Ca, clients: Option<&Ca>, alpn: &[u8]) -> Arc<rustls::ServerConfig> {
    let leaf = ca.server(&[BACKEND_NAME], "backend", 2035);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match clients {
        Some(clients) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(CertificateDer::from(clients.der())).unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider,
                )
                .build()
                .unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(
            vec![CertificateDer::from(leaf.der.clone())],
            PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// An HTTP/1.1 handler that says it was reached over TLS.
fn hello() -> Handler<Full<Bytes>> {
    Arc::new(|req: Request<Incoming>| {
        let path = req.uri().path().to_string();
        Box::pin(
            async move { Response::new(Full::new(Bytes::from(format!("hello over tls: {path}")))) },
        )
    })
}

// ---------------------------------------------------------------------------
// gRPC: a tonic server and a tonic client, over the raw-bytes codec
// ---------------------------------------------------------------------------

const UNARY: &str = "/test.Echo/Unary";
const CHAT: &str = "/test.Echo/Chat";
const TRAILER: &str = "x-echo-count";
const SLOW: &str = "/test.Echo/Slow";

/// Unary: answers `unary:` and the message.
#[derive(Clone)]
struct UnaryEcho;

impl tower_service::Service<tonic::Request<Bytes>> for UnaryEcho {
    type Response = tonic::Response<Bytes>;
    type Error = Status;
    type Future = std::future::Ready<Result<Self::Response, Status>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: tonic::Request<Bytes>) -> Self::Future {
        let mut out = b"unary:".to_vec();
        out.extend_from_slice(req.get_ref());
        std::future::ready(Ok(tonic::Response::new(Bytes::from(out))))
    }
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// Bidirectional: answers each message in upper case as it arrives, then
/// ends with status OK and a custom trailer counting the messages.
#[derive(Clone)]
struct Chat;

impl tower_service::Service<tonic::Request<Streaming<Bytes>>> for Chat {
    type Response = tonic::Response<MessageStream>;
    type Error = Status;
    type Future = std::future::Ready<Result<Self::Response, Status>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, req: tonic::Request<Streaming<Bytes>>) -> Self::Future {
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = count.clone();
        let replies = req.into_inner().map(move |m| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            m.map(|b| Bytes::from(b.to_ascii_uppercase()))
        });
        let end = futures::stream::once(async move {
            let mut md = MetadataMap::new();
            let n = count.load(std::sync::atomic::Ordering::SeqCst);
            md.insert(TRAILER, n.to_string().parse().unwrap());
            Err(Status::with_metadata(Code::Ok, "", md))
        });
        let stream: MessageStream = Box::pin(replies.chain(end));
        std::future::ready(Ok(tonic::Response::new(stream)))
    }
}

fn grpc_server() -> Handler<tonic::body::Body> {
    Arc::new(|req: Request<Incoming>| {
        Box::pin(async move {
            match req.uri().path() {
                UNARY => tonic::server::Grpc::new(Raw).unary(UnaryEcho, req).await,
                CHAT => tonic::server::Grpc::new(Raw).streaming(Chat, req).await,
                SLOW => {
                    tokio::time::sleep(Duration::from_secs(4)).await;
                    tonic::server::Grpc::new(Raw).unary(UnaryEcho, req).await
                }
                _ => Status::unimplemented("no such method").into_http(),
            }
        })
    })
}

/// A gRPC channel to the proxy: one h2 connection over TLS with a client
/// certificate, every request addressed to `authority`.
#[derive(Clone)]
struct Channel {
    sender: hyper::client::conn::http2::SendRequest<tonic::body::Body>,
    authority: String,
}

impl tower_service::Service<Request<tonic::body::Body>> for Channel {
    type Response = Response<Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Incoming>, hyper::Error>> + Send>>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.sender.poll_ready(cx)
    }
    fn call(&mut self, mut req: Request<tonic::body::Body>) -> Self::Future {
        let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
        *req.uri_mut() = format!("https://{}{pq}", self.authority).parse().unwrap();
        Box::pin(self.sender.send_request(req))
    }
}

async fn grpc_client(edge: &Edge, name: &str) -> tonic::client::Grpc<Channel> {
    let host = format!("{name}.{SUFFIX}");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", edge.proxy.https))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(edge.cfg(b"h2"))
        .connect(ServerName::try_from(host.clone()).unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    tonic::client::Grpc::new(Channel {
        sender,
        authority: format!("{host}:{}", edge.proxy.https),
    })
}

async fn unary(grpc: &mut tonic::client::Grpc<Channel>, msg: &str) -> Result<Bytes, Status> {
    call(grpc, UNARY, msg).await
}

async fn call(
    grpc: &mut tonic::client::Grpc<Channel>,
    method: &str,
    msg: &str,
) -> Result<Bytes, Status> {
    grpc.ready()
        .await
        .map_err(|e| Status::unknown(e.to_string()))?;
    let resp = grpc
        .unary(
            tonic::Request::new(Bytes::from(msg.to_string())),
            method.parse().unwrap(),
            Raw,
        )
        .await?;
    Ok(resp.into_inner())
}

/// A bidirectional call that sends each next message only after the
/// answer to the previous one came back (so both directions stream),
/// then reads the custom trailer.
async fn chat(grpc: &mut tonic::client::Grpc<Channel>, msgs: &[&str]) -> (Vec<String>, String) {
    grpc.ready().await.unwrap();
    let (tx, rx) = futures::channel::mpsc::unbounded::<Bytes>();
    tx.unbounded_send(Bytes::from(msgs[0].to_string())).unwrap();
    let mut stream = grpc
        .streaming(tonic::Request::new(rx), CHAT.parse().unwrap(), Raw)
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    for next in msgs[1..].iter().map(Some).chain([None]) {
        let m = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("an answer before the next message is sent")
            .unwrap()
            .expect("a message");
        got.push(String::from_utf8(m.to_vec()).unwrap());
        match next {
            Some(n) => tx.unbounded_send(Bytes::from(n.to_string())).unwrap(),
            None => tx.close_channel(),
        }
    }
    assert!(stream.message().await.unwrap().is_none());
    let trailers = stream.trailers().await.unwrap().expect("trailers");
    let count = trailers
        .get(TRAILER)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (got, count)
}

// ---------------------------------------------------------------------------
// HTTPS backends
// ---------------------------------------------------------------------------

fn backend_secret(name: &str, ca: &Ca, client: Option<&Leaf>) -> Value {
    let ca_pem = ca.pem();
    let mut data = vec![("ca.crt", ca_pem.as_str())];
    if let Some(c) = client {
        data.push(("tls.crt", c.cert_pem.as_str()));
        data.push(("tls.key", c.key_pem.as_str()));
    }
    opaque_secret(name, &data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_backend_that_requires_a_client_certificate_gets_the_proxy_ssl_secret_one() {
    let backend_ca = Ca::new("backend CA");
    let proxy_clients = Ca::new("clients the backend accepts");
    let proxy_cert = proxy_clients.client(ClientSpec::named("tlsward-proxy"));
    let backend = Backend::start(
        Some(backend_tls(&backend_ca, Some(&proxy_clients), b"http/1.1")),
        false,
        hello(),
    );
    let https = |secret: &str| {
        json!({"backend-protocol": "HTTPS", "proxy-ssl-secret": format!("default/{secret}"),
               "proxy-ssl-verify": "on", "proxy-ssl-name": BACKEND_NAME})
    };
    let edge = Edge::start(
        &[
            ("mtls", backend.addr, https("with-client-cert")),
            ("nocert", backend.addr, https("ca-only")),
        ],
        &[
            backend_secret("with-client-cert", &backend_ca, Some(&proxy_cert)),
            backend_secret("ca-only", &backend_ca, None),
        ],
    );
    assert_eq!(
        edge.proxy.metric("tlsward_proxy_config_problems", &[]),
        0.0,
        "{}",
        edge.proxy.log()
    );

    let ok = edge.get("mtls", "/orders").await;
    assert_eq!(ok.status, 200, "{}\n{}", ok.body, edge.proxy.log());
    assert_eq!(ok.body, "hello over tls: /orders");
    // Pooled: a second request works on the same TLS connection.
    assert_eq!(edge.get("mtls", "/again").await.status, 200);

    // A reload that changes nothing about the backend keeps its TLS
    // connection: the pool still knows the same client configuration.
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let reloads = edge.proxy.metric("tlsward_proxy_reloads_total", &[]);
    write_json(
        &edge.proxy.dir,
        "unrelated.json",
        &[service("unrelated", &[])],
    );
    assert!(
        edge.proxy
            .wait_metric("tlsward_proxy_reloads_total", &[], |v| v > reloads)
            > reloads
    );
    assert_eq!(edge.get("mtls", "/after-reload").await.status, 200);
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );

    // The same backend without the client certificate refuses the proxy.
    let refused = edge.get("nocert", "/orders").await;
    assert_eq!(refused.status, 502, "{}", refused.body);
    assert!(edge.upstream_requests("https", "ok") >= 2.0);
    assert!(edge.upstream_requests("https", "error") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_certificate_from_another_ca_is_a_502_with_a_log_line_naming_the_ingress() {
    let backend_ca = Ca::new("backend CA");
    let stranger = Ca::new("some other CA");
    let backend = Backend::start(
        Some(backend_tls(&backend_ca, None, b"http/1.1")),
        false,
        hello(),
    );
    let edge = Edge::start(
        &[(
            "wrongca",
            backend.addr,
            json!({"backend-protocol": "HTTPS", "proxy-ssl-secret": "wrong-ca",
                   "proxy-ssl-name": BACKEND_NAME}),
        )],
        &[backend_secret("wrong-ca", &stranger, None)],
    );
    let resp = edge.get("wrongca", "/").await;
    assert_eq!(resp.status, 502, "{}", resp.body);
    assert!(
        edge.proxy.wait_log(&[
            "upstream failed",
            "default/wrongca",
            "default/wrongca-svc:80",
            "UnknownIssuer",
        ]),
        "no log line naming the Ingress, backend and TLS error:\n{}",
        edge.proxy.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_ssl_name_is_the_name_the_backend_certificate_is_checked_against() {
    let backend_ca = Ca::new("backend CA");
    // The backend's certificate names BACKEND_NAME only.
    let backend = Backend::start(
        Some(backend_tls(&backend_ca, None, b"http/1.1")),
        false,
        hello(),
    );
    let with = |name: Option<&str>| {
        let mut a = json!({"backend-protocol": "HTTPS", "proxy-ssl-secret": "backend-ca"});
        if let Some(n) = name {
            a["proxy-ssl-name"] = json!(n);
            a["proxy-ssl-server-name"] = json!("on");
        }
        a
    };
    let edge = Edge::start(
        &[
            ("named", backend.addr, with(Some(BACKEND_NAME))),
            ("othername", backend.addr, with(Some("billing.internal"))),
            // Without the annotation: the Service's name, which the
            // certificate does not carry.
            ("servicename", backend.addr, with(None)),
        ],
        &[backend_secret("backend-ca", &backend_ca, None)],
    );
    assert_eq!(
        edge.get("named", "/").await.status,
        200,
        "{}",
        edge.proxy.log()
    );
    assert_eq!(edge.get("othername", "/").await.status, 502);
    assert_eq!(edge.get("servicename", "/").await.status, 502);
    assert!(
        edge.proxy
            .wait_log(&["billing.internal", "servicename-svc.default.svc"]),
        "{}",
        edge.proxy.log()
    );
}

// ---------------------------------------------------------------------------
// gRPC
// ---------------------------------------------------------------------------

async fn grpc_round_trip(edge: &Edge, name: &str) {
    let mut grpc = grpc_client(edge, name).await;
    match unary(&mut grpc, "ping").await {
        Ok(answer) => assert_eq!(&answer[..], b"unary:ping"),
        Err(status) => panic!("{status:?}\n{}", edge.proxy.log()),
    }
    let (got, count) = chat(&mut grpc, &["one", "two", "three"]).await;
    assert_eq!(got, ["ONE", "TWO", "THREE"]);
    assert_eq!(count, "3", "the backend's custom trailer did not arrive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_h2c_unary_and_bidirectional_streaming_with_trailers() {
    let backend = Backend::start(None, true, grpc_server());
    let edge = Edge::start(
        &[("grpc", backend.addr, json!({"backend-protocol": "GRPC"}))],
        &[],
    );
    grpc_round_trip(&edge, "grpc").await;
    // An HTTP/1.1 client reaches the h2c backend too: tonic's own answer
    // for a method it does not have comes back.
    let h1 = edge.get("grpc", "/test.Echo/Missing").await;
    assert_eq!(h1.status, 200, "{}", h1.body);
    assert_eq!(
        h1.headers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"12"[..]),
        "{:?}",
        h1.headers
    );
    assert!(edge.upstream_requests("grpc", "ok") >= 3.0);
    // Every call, from both clients, went over one shared h2 connection.
    assert_eq!(
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcs_over_tls_with_a_client_certificate_to_the_backend() {
    let backend_ca = Ca::new("backend CA");
    let proxy_clients = Ca::new("clients the backend accepts");
    let proxy_cert = proxy_clients.client(ClientSpec::named("tlsward-proxy"));
    let backend = Backend::start(
        Some(backend_tls(&backend_ca, Some(&proxy_clients), b"h2")),
        true,
        grpc_server(),
    );
    let edge = Edge::start(
        &[(
            "grpcs",
            backend.addr,
            json!({"backend-protocol": "GRPCS", "proxy-ssl-secret": "default/backend",
                   "proxy-ssl-name": BACKEND_NAME, "proxy-ssl-server-name": "on"}),
        )],
        &[backend_secret("backend", &backend_ca, Some(&proxy_cert))],
    );
    grpc_round_trip(&edge, "grpcs").await;
    assert!(edge.upstream_requests("grpcs", "ok") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_backend_that_is_down_gives_unavailable_not_an_html_502() {
    let edge = Edge::start(
        &[("down", dead_addr(), json!({"backend-protocol": "GRPC"}))],
        &[],
    );
    let mut grpc = grpc_client(&edge, "down").await;
    let status = unary(&mut grpc, "ping").await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(status.message().contains("down-svc"), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_read_timeout_gives_deadline_exceeded() {
    let backend = Backend::start(None, true, grpc_server());
    let edge = Edge::start(
        &[(
            "slowgrpc",
            backend.addr,
            json!({"backend-protocol": "GRPC", "proxy-read-timeout": "1"}),
        )],
        &[],
    );
    let mut grpc = grpc_client(&edge, "slowgrpc").await;
    let started = Instant::now();
    let status = call(&mut grpc, SLOW, "ping").await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // The connection is still good for the next call.
    assert_eq!(&unary(&mut grpc, "pong").await.unwrap()[..], b"unary:pong");
}

// ---------------------------------------------------------------------------
// Body size and timeouts
// ---------------------------------------------------------------------------

/// POSTs `chunks` over h2, with a Content-Length only when `with_length`.
async fn post(edge: &Edge, name: &str, chunks: Vec<Bytes>, with_length: bool) -> Resp {
    post_paced(edge, name, chunks, with_length, Duration::from_millis(5)).await
}

/// POSTs `chunks` over h2, `pause` apart, with a Content-Length only when
/// `with_length`.
async fn post_paced(
    edge: &Edge,
    name: &str,
    chunks: Vec<Bytes>,
    with_length: bool,
    pause: Duration,
) -> Resp {
    let host = format!("{name}.{SUFFIX}");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", edge.proxy.https))
        .await
        .unwrap();
    let tls = tokio_rustls::TlsConnector::from(edge.cfg(b"h2"))
        .connect(ServerName::try_from(host.clone()).unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let len: usize = chunks.iter().map(Bytes::len).sum();
    let frames = futures::stream::iter(chunks).then(move |c| async move {
        // Apart in time, so the body really streams.
        tokio::time::sleep(pause).await;
        Ok::<_, Infallible>(Frame::data(c))
    });
    let body: BoxBody<Bytes, Infallible> = BodyExt::boxed(StreamBody::new(frames));
    let mut req = Request::post(format!("https://{host}:{}/upload", edge.proxy.https));
    if with_length {
        req = req.header(hyper::header::CONTENT_LENGTH, len);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        sender.send_request(req.body(body).unwrap()),
    )
    .await
    .expect("an answer within 10 s")
    .unwrap();
    let status = resp.status().as_u16();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Resp {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
        headers,
        version,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_body_size_answers_413_up_front_and_while_streaming() {
    let upstream = Upstream::start("echo");
    let edge = Edge::start(
        &[("small", upstream.addr, json!({"proxy-body-size": "1k"}))],
        &[],
    );
    let kib = |n: usize| vec![Bytes::from(vec![b'x'; 256]); n * 4];

    let fits = post(&edge, "small", kib(1), true).await;
    assert_eq!(fits.status, 200, "{}", fits.body);
    assert_eq!(fits.json()["body_len"], 1024);
    let hits = upstream.hits();

    // Content-Length says too large: refused before the upstream sees it.
    let declared = post(&edge, "small", kib(2), true).await;
    assert_eq!(declared.status, 413, "{}", declared.body);
    assert!(
        declared.body.contains("proxy-body-size"),
        "{}",
        declared.body
    );
    assert_eq!(upstream.hits(), hits, "a refused body reached the upstream");

    // No length: cut off as it outgrows the limit.
    let streamed = post(&edge, "small", kib(4), false).await;
    assert_eq!(streamed.status, 413, "{}", streamed.body);
    let fits_streamed = post(&edge, "small", kib(1), false).await;
    assert_eq!(fits_streamed.status, 200, "{}", fits_streamed.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_read_timeout_answers_504() {
    // Sleeps 4 s on /slow; the proxy's own response timeout is 60 s.
    let upstream = Upstream::start_with_delay("slow", Duration::from_secs(4));
    let edge = Edge::start(
        &[("slow", upstream.addr, json!({"proxy-read-timeout": "1"}))],
        &[],
    );
    assert_eq!(edge.get("slow", "/fast").await.status, 200);
    let started = Instant::now();
    let resp = edge.get("slow", "/slow").await;
    assert_eq!(resp.status, 504, "{}", resp.body);
    assert!(
        started.elapsed() < Duration::from_millis(3000),
        "took {:?}",
        started.elapsed()
    );
    assert!(edge.upstream_requests("http", "timeout") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_backend_annotations_are_reported_and_a_missing_proxy_ssl_secret_is_a_502() {
    let upstream = Upstream::start("echo");
    let edge = Edge::start(
        &[
            // Reported; the backend is reached over HTTP.
            ("fcgi", upstream.addr, json!({"backend-protocol": "FCGI"})),
            // Reported; nothing goes out over TLS with weaker settings.
            (
                "nosecret",
                upstream.addr,
                json!({"backend-protocol": "HTTPS", "proxy-ssl-secret": "missing"}),
            ),
        ],
        &[],
    );
    assert_eq!(
        edge.proxy.metric("tlsward_proxy_config_problems", &[]),
        2.0,
        "{}",
        edge.proxy.log()
    );
    assert!(
        edge.proxy.wait_log(&[
            "nginx.ingress.kubernetes.io/backend-protocol: \\\"FCGI\\\" is not supported",
            "nginx.ingress.kubernetes.io/proxy-ssl-secret: Secret default/missing not found",
        ]),
        "{}",
        edge.proxy.log()
    );
    let fcgi = edge.get("fcgi", "/").await;
    assert_eq!(fcgi.status, 200, "{}", fcgi.body);
    let hits = upstream.hits();
    let nosecret = edge.get("nosecret", "/").await;
    assert_eq!(nosecret.status, 502, "{}", nosecret.body);
    assert_eq!(upstream.hits(), hits, "a request went out without its TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_send_timeout_answers_504_when_the_request_body_stalls() {
    let upstream = Upstream::start("echo");
    let edge = Edge::start(
        &[("upload", upstream.addr, json!({"proxy-send-timeout": "1"}))],
        &[],
    );
    let chunks = || vec![Bytes::from_static(b"part"); 3];
    let brisk = post_paced(&edge, "upload", chunks(), false, Duration::from_millis(200)).await;
    assert_eq!(brisk.status, 200, "{}", brisk.body);
    assert_eq!(brisk.json()["body_len"], 12);
    let started = Instant::now();
    let stalled = post_paced(&edge, "upload", chunks(), false, Duration::from_secs(3)).await;
    assert_eq!(stalled.status, 504, "{}", stalled.body);
    assert!(
        started.elapsed() < Duration::from_millis(5500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_message_over_proxy_body_size_gives_resource_exhausted() {
    let backend = Backend::start(None, true, grpc_server());
    let edge = Edge::start(
        &[(
            "tinygrpc",
            backend.addr,
            json!({"backend-protocol": "GRPC", "proxy-body-size": "64"}),
        )],
        &[],
    );
    let mut grpc = grpc_client(&edge, "tinygrpc").await;
    assert_eq!(
        &unary(&mut grpc, "small").await.unwrap()[..],
        b"unary:small"
    );
    let status = unary(&mut grpc, &"x".repeat(200)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("proxy-body-size"), "{status:?}");
}
