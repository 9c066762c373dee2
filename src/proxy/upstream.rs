//! A worker's connections to its upstreams: keep-alive HTTP/1.1
//! connections, idle ones pooled, and shared h2 connections (gRPC), each
//! over TCP or TLS.
//!
//! Each HTTPS worker has its own pool, so a request, its upstream
//! connection and that connection's task stay on one thread. It does less
//! than hyper-util's pooled client because it needs less: no name
//! resolution (endpoints are addresses), and an HTTP/1.1 connection goes
//! back to the pool when its response body ends, not through a task
//! spawned for every request. An h2 connection carries many requests at
//! once, so there is one per endpoint and TLS setting, not a pool of them.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::{http1, http2};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::debug;

use super::routes::{UpstreamTls, Via};
use crate::fast_hash::HashMap;

/// Idle connections kept per endpoint; more are closed when they come back.
const MAX_IDLE_PER_ENDPOINT: usize = 1024;
/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Every this many returns, endpoints that are gone lose their closed
/// connections (a list is otherwise pruned only when used).
const SWEEP_EVERY: u64 = 4096;

/// Why an upstream request failed: the client gets a 502.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// No TCP connection: refused or unreachable.
    #[error("connecting to {addr}: {error}")]
    Connect {
        /// The endpoint.
        addr: SocketAddr,
        /// What the OS said.
        error: std::io::Error,
    },
    /// No TCP connection (and TLS session) within the connect timeout.
    #[error("connecting to {addr}: no connection within {after:?}")]
    ConnectTimeout {
        /// The endpoint.
        addr: SocketAddr,
        /// The connect timeout.
        after: Duration,
    },
    /// The TLS handshake with the backend failed: most often its
    /// certificate is not signed by the `proxy-ssl-secret` CA, or does not
    /// name the expected name (`proxy-ssl-name`).
    #[error("TLS handshake with {addr} as {name:?}: {error}")]
    Tls {
        /// The endpoint.
        addr: SocketAddr,
        /// The name the certificate was checked against.
        name: String,
        /// What rustls said.
        error: std::io::Error,
    },
    /// The backend's TLS settings could not be built (see the proxy's
    /// configuration problems); nothing is sent unprotected.
    #[error("the backend's TLS settings are unusable: {0}")]
    TlsSettings(String),
    /// The HTTP exchange failed.
    #[error("{0}")]
    Http(hyper::Error),
}

/// Where a request goes: an endpoint, and how to speak to it.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    /// The endpoint.
    pub addr: SocketAddr,
    /// Protocol, TLS and connect timeout.
    pub via: &'a Via,
}

/// What a pooled connection was made for: an endpoint, a protocol and,
/// for TLS, the name checked and the very client configuration (by
/// identity, so that a connection verified under an old CA is never lent
/// to a request under a new one; the key holds the configuration, so its
/// address cannot be reused by another one meanwhile).
#[derive(Clone)]
struct Key {
    addr: SocketAddr,
    h2: bool,
    tls: Option<Arc<UpstreamTls>>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr
            && self.h2 == other.h2
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(&a.config, &b.config) && a.name == b.name,
                _ => false,
            }
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
        self.h2.hash(state);
        if let Some(t) = &self.tls {
            Arc::as_ptr(&t.config).hash(state);
            t.name.hash(state);
        }
    }
}

struct Idle<B> {
    sender: http1::SendRequest<B>,
    since: Instant,
}

struct Shared2<B> {
    sender: http2::SendRequest<B>,
    since: Instant,
}

/// One worker's upstream connections, idle ones by endpoint. `B` is the
/// request body type: the proxy forwards its clients' bodies as they come.
pub struct Upstream<B = RequestBody> {
    idle: Mutex<IdleConnections<B>>,
    /// One h2 connection per key, shared by every request to it.
    h2: Mutex<HashMap<Key, Shared2<B>>>,
    connect_timeout: Duration,
}

struct IdleConnections<B> {
    /// Most recently returned last.
    by_endpoint: HashMap<Key, VecDeque<Idle<B>>>,
    returns: u64,
}

impl<B> Idle<B> {
    fn usable(&self) -> bool {
        !self.sender.is_closed() && self.since.elapsed() <= IDLE_TIMEOUT
    }
}

/// A new connection's stream, before HTTP is spoken on it.
enum Stream {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl<B> Upstream<B>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// An empty pool whose new connections must be made within
    /// `connect_timeout` (unless a backend sets its own).
    pub fn new(connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(IdleConnections {
                by_endpoint: HashMap::default(),
                returns: 0,
            }),
            h2: Mutex::new(HashMap::default()),
            connect_timeout,
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) to `addr` over cleartext
    /// HTTP/1.1, on an idle connection or on a new one.
    #[cfg(test)]
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        req: Request<B>,
    ) -> Result<Response<PooledBody<B>>, UpstreamError> {
        let via = Via::default();
        self.send_to(Target { addr, via: &via }, req).await
    }

    /// Sends `req` to `target` as its protocol says. An HTTP/1.1 request
    /// is in origin form with `Host` set; an h2 request in absolute form.
    pub async fn send_to(
        self: &Arc<Self>,
        target: Target<'_>,
        req: Request<B>,
    ) -> Result<Response<PooledBody<B>>, UpstreamError> {
        if let Some(why) = &target.via.tls_error {
            return Err(UpstreamError::TlsSettings(why.clone()));
        }
        let key = Key {
            addr: target.addr,
            h2: target.via.protocol.h2(),
            tls: target.via.tls.clone(),
        };
        if key.h2 {
            self.send_h2(key, target, req).await
        } else {
            self.send_h1(key, target, req).await
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        key: Key,
        target: Target<'_>,
        mut req: Request<B>,
    ) -> Result<Response<PooledBody<B>>, UpstreamError> {
        loop {
            let (mut sender, reused) = match self.checkout(&key).await {
                Some(sender) => (sender, true),
                None => {
                    let stream = self.connect(target).await?;
                    (handshake_h1(stream, target.addr).await?, false)
                }
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    // After a 101 the connection belongs to the tunnel.
                    let back =
                        (resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS).then(|| Return {
                            pool: self.clone(),
                            key,
                            sender,
                        });
                    return Ok(resp.map(|body| PooledBody { body, back }));
                }
                // A reused connection that the upstream closed as the
                // request went out: hyper hands back a request it did not
                // write, and it goes out again on another connection.
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        debug!(upstream = %target.addr, error = %e.error(), "pooled connection closed; retrying");
                        req = unsent;
                    }
                    _ => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
    }

    async fn send_h2(
        self: &Arc<Self>,
        key: Key,
        target: Target<'_>,
        req: Request<B>,
    ) -> Result<Response<PooledBody<B>>, UpstreamError> {
        // A shared connection that turns out closed (the backend went
        // away, or sent GOAWAY, while idle) is replaced once; the request
        // has not been sent on it.
        let reusable = match self.shared_h2(&key) {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => {
                let stream = self.connect(target).await?;
                let mut sender = handshake_h2(stream, target.addr).await?;
                {
                    let mut map = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
                    // Connections unused for long, or closed, go; a reload's
                    // new TLS settings leave the old ones unused.
                    map.retain(|_, s| !s.sender.is_closed() && s.since.elapsed() <= IDLE_TIMEOUT);
                    map.insert(
                        key,
                        Shared2 {
                            sender: sender.clone(),
                            since: Instant::now(),
                        },
                    );
                }
                sender.ready().await.map_err(UpstreamError::Http)?;
                sender
            }
        };
        let resp = sender
            .send_request(req)
            .await
            .map_err(UpstreamError::Http)?;
        Ok(resp.map(|body| PooledBody { body, back: None }))
    }

    /// The h2 connection for `key`, if there is one that is not closed.
    fn shared_h2(&self, key: &Key) -> Option<http2::SendRequest<B>> {
        let mut map = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
        let s = map.get_mut(key).filter(|s| !s.sender.is_closed())?;
        s.since = Instant::now();
        Some(s.sender.clone())
    }

    /// The most recently used idle connection for `key` that is still open.
    async fn checkout(&self, key: &Key) -> Option<http1::SendRequest<B>> {
        loop {
            // An emptied list stays: removing it would cost an allocation
            // when the connection comes back.
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .by_endpoint
                .get_mut(key)?
                .pop_back()?;
            if !idle.usable() {
                continue;
            }
            // Ready at once unless the connection is still finishing the
            // previous response; an error means the upstream closed it.
            if idle.sender.ready().await.is_ok() {
                return Some(idle.sender);
            }
        }
    }

    /// TCP, then TLS when the backend asks for it, within the connect
    /// timeout.
    async fn connect(&self, target: Target<'_>) -> Result<Stream, UpstreamError> {
        let addr = target.addr;
        let after = target.via.connect_timeout.unwrap_or(self.connect_timeout);
        let connecting = async {
            let tcp = TcpStream::connect(addr)
                .await
                .map_err(|error| UpstreamError::Connect { addr, error })?;
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &target.via.tls else {
                return Ok(Stream::Tcp(tcp));
            };
            let tls_stream = tokio_rustls::TlsConnector::from(tls.config.clone())
                .connect(tls.name.clone(), tcp)
                .await
                .map_err(|error| UpstreamError::Tls {
                    addr,
                    name: tls.name.to_str().into_owned(),
                    error,
                })?;
            Ok(Stream::Tls(Box::new(tls_stream)))
        };
        match tokio::time::timeout(after, connecting).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::ConnectTimeout { addr, after }),
        }
    }
}

async fn handshake_h1<B>(
    stream: Stream,
    addr: SocketAddr,
) -> Result<http1::SendRequest<B>, UpstreamError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match stream {
        Stream::Tcp(tcp) => h1_over(tcp, addr).await,
        Stream::Tls(tls) => h1_over(tls, addr).await,
    }
}

async fn h1_over<IO, B>(io: IO, addr: SocketAddr) -> Result<http1::SendRequest<B>, UpstreamError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Http)?;
    // With upgrades, a 101 hands the stream over (WebSockets).
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            debug!(upstream = %addr, error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

async fn handshake_h2<B>(
    stream: Stream,
    addr: SocketAddr,
) -> Result<http2::SendRequest<B>, UpstreamError>
where
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match stream {
        Stream::Tcp(tcp) => h2_over(tcp, addr).await,
        Stream::Tls(tls) => h2_over(tls, addr).await,
    }
}

async fn h2_over<IO, B>(io: IO, addr: SocketAddr) -> Result<http2::SendRequest<B>, UpstreamError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // Notices a backend that vanished without closing.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10))
        .handshake(TokioIo::new(io))
        .await
        .map_err(UpstreamError::Http)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(upstream = %addr, error = %e, "upstream h2 connection ended");
        }
    });
    Ok(sender)
}

impl<B> Upstream<B> {
    fn put_back(&self, key: Key, sender: http1::SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.returns = idle.returns.wrapping_add(1);
        if idle.returns.is_multiple_of(SWEEP_EVERY) {
            idle.by_endpoint.retain(|_, list| {
                list.retain(Idle::usable);
                !list.is_empty()
            });
        }
        let list = idle.by_endpoint.entry(key).or_default();
        // Oldest first: drop the ones that have waited too long.
        while list.front().is_some_and(|i| !i.usable()) {
            list.pop_front();
        }
        if list.len() < MAX_IDLE_PER_ENDPOINT {
            list.push_back(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }
}

struct Return<B> {
    pool: Arc<Upstream<B>>,
    key: Key,
    sender: http1::SendRequest<B>,
}

/// An upstream response body. An HTTP/1.1 connection goes back to the pool
/// when the body has been read to the end; a body dropped before its end
/// (the client went away) closes the connection instead, since the rest of
/// the response would still be in it. Trailers (gRPC's status) pass
/// through as frames.
pub struct PooledBody<B = RequestBody> {
    body: Incoming,
    back: Option<Return<B>>,
}

impl<B> Body for PooledBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl<B> PooledBody<B> {
    fn release(&mut self) {
        if let Some(r) = self.back.take() {
            r.pool.put_back(r.key, r.sender);
        }
    }
}

impl<B> Drop for PooledBody<B> {
    fn drop(&mut self) {
        // An empty body (a 204, a HEAD, `Content-Length: 0`) is complete
        // without ever being polled.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

/// Why a client's request body was cut off on its way upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body outgrew `proxy-body-size`.
    #[error("request body larger than {limit} bytes (proxy-body-size)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// No body chunk within `proxy-send-timeout`.
    #[error("no request body data for {after:?} (proxy-send-timeout)")]
    Stalled {
        /// The timeout.
        after: Duration,
    },
    /// The client's connection failed.
    #[error("{0}")]
    Client(hyper::Error),
}

/// What became of a limited request body, for the client's answer: the
/// upstream exchange only fails, it does not say why.
#[derive(Debug, Default)]
pub struct BodyOutcome {
    /// It outgrew `proxy-body-size` (413).
    pub too_large: AtomicBool,
    /// It stalled past `proxy-send-timeout` (504).
    pub stalled: AtomicBool,
}

/// A client's request body on its way upstream, held to the backend's
/// body-size limit and send timeout. Without them it only passes frames on.
pub struct RequestBody {
    inner: Incoming,
    /// The limit and the bytes still allowed, when there is a limit.
    left: Option<(u64, u64)>,
    /// Where a broken limit is recorded.
    outcome: Option<Arc<BodyOutcome>>,
    stall: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
}

impl RequestBody {
    /// `inner` unrestricted.
    pub fn new(inner: Incoming) -> Self {
        Self {
            inner,
            left: None,
            outcome: None,
            stall: None,
        }
    }

    /// `inner` held to `limit` bytes and to `send_timeout` between chunks;
    /// what breaks is recorded in `outcome`.
    pub fn limited(
        inner: Incoming,
        limit: Option<u64>,
        send_timeout: Option<Duration>,
        outcome: Arc<BodyOutcome>,
    ) -> Self {
        Self {
            inner,
            left: limit.map(|l| (l, l)),
            outcome: Some(outcome),
            stall: send_timeout.map(|after| (after, Box::pin(tokio::time::sleep(after)))),
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                if let Some((after, sleep)) = &mut this.stall
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    if let Some(o) = &this.outcome {
                        o.stalled.store(true, Ordering::Relaxed);
                    }
                    return Poll::Ready(Some(Err(BodyError::Stalled { after: *after })));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some((after, sleep)) = &mut this.stall {
                    sleep.as_mut().reset(tokio::time::Instant::now() + *after);
                }
                if let (Some((limit, left)), Some(data)) = (&mut this.left, frame.data_ref()) {
                    let n = data.len() as u64;
                    if n > *left {
                        if let Some(o) = &this.outcome {
                            o.too_large.store(true, Ordering::Relaxed);
                        }
                        return Poll::Ready(Some(Err(BodyError::TooLarge { limit: *limit })));
                    }
                    *left -= n;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(BodyError::Client(e)))),
            Poll::Ready(None) => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    type Pool = Arc<Upstream<Empty<Bytes>>>;

    /// An HTTP/1.1 upstream written by hand, so a test decides when it
    /// closes: it answers each request with `body`, then closes the
    /// connection after `requests_per_connection` answers, or when it has
    /// been idle for `idle_close`.
    struct Origin {
        addr: SocketAddr,
        connections: Arc<AtomicUsize>,
    }

    impl Origin {
        async fn start(
            body: &'static str,
            requests_per_connection: usize,
            idle_close: Duration,
        ) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let connections = Arc::new(AtomicUsize::new(0));
            let counted = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut tcp, _)) = listener.accept().await {
                    counted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        let mut buf = Vec::new();
                        for _ in 0..requests_per_connection {
                            // One GET without a body: read up to its blank line.
                            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                                let mut chunk = [0u8; 1024];
                                match tokio::time::timeout(idle_close, tcp.read(&mut chunk)).await {
                                    Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                                    _ => return,
                                }
                            }
                            let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                            buf.drain(..end);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                body.len()
                            );
                            if tcp.write_all(head.as_bytes()).await.is_err()
                                || tcp.write_all(body.as_bytes()).await.is_err()
                            {
                                return;
                            }
                        }
                    });
                }
            });
            Self { addr, connections }
        }

        fn connections(&self) -> usize {
            self.connections.load(Ordering::SeqCst)
        }
    }

    fn get() -> Request<Empty<Bytes>> {
        Request::get("/")
            .header(hyper::header::HOST, "origin.test")
            .body(Empty::new())
            .unwrap()
    }

    async fn read_all(pool: &Pool, addr: SocketAddr) -> String {
        let resp = pool.send(addr, get()).await.unwrap();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_response_has_been_read() {
        let origin = Origin::start("hello", 100, Duration::from_secs(30)).await;
        let pool: Pool = Upstream::new(Duration::from_secs(1));
        for _ in 0..5 {
            assert_eq!(read_all(&pool, origin.addr).await, "hello");
        }
        assert_eq!(origin.connections(), 1);
    }

    #[tokio::test]
    async fn a_response_dropped_before_its_end_does_not_lend_its_connection() {
        let origin = Origin::start(
            "a body the client never reads",
            100,
            Duration::from_secs(30),
        )
        .await;
        let pool: Pool = Upstream::new(Duration::from_secs(1));
        let unread = pool.send(origin.addr, get()).await.unwrap();
        drop(unread);
        // The unread rest of the first body must not reach this request.
        assert_eq!(
            read_all(&pool, origin.addr).await,
            "a body the client never reads"
        );
        assert_eq!(origin.connections(), 2);
    }

    #[tokio::test]
    async fn connections_the_upstream_closed_while_idle_are_not_used() {
        // Closes after each answer without saying so, and also when idle.
        let origin = Origin::start("once", 1, Duration::from_millis(100)).await;
        let pool: Pool = Upstream::new(Duration::from_secs(1));
        for _ in 0..3 {
            assert_eq!(read_all(&pool, origin.addr).await, "once");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(origin.connections(), 3);
    }

    #[tokio::test]
    async fn a_refused_connection_names_the_address() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let pool: Pool = Upstream::new(Duration::from_secs(1));
        let Err(err) = pool.send(addr, get()).await else {
            panic!("a request to a closed port was answered");
        };
        assert!(
            matches!(err, UpstreamError::Connect { addr: a, .. } if a == addr),
            "{err}"
        );
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }
}
