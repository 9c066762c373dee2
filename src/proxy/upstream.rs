//! A worker's keep-alive connections to its upstreams, over HTTP/1.1.
//!
//! Each HTTPS worker has its own pool, so a request, its upstream
//! connection and that connection's task stay on one thread. It does less
//! than hyper-util's pooled client because it needs less: one protocol, no
//! name resolution (endpoints are addresses), and a connection goes back to
//! the pool when its response body ends, not through a task spawned for
//! every request.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tracing::debug;

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
    /// No TCP connection within the connect timeout.
    #[error("connecting to {addr}: no connection within {after:?}")]
    ConnectTimeout {
        /// The endpoint.
        addr: SocketAddr,
        /// The connect timeout.
        after: Duration,
    },
    /// The HTTP/1.1 exchange failed.
    #[error("{0}")]
    Http(hyper::Error),
}

struct Idle<B> {
    sender: SendRequest<B>,
    since: Instant,
}

/// One worker's upstream connections, idle ones by endpoint. `B` is the
/// request body type: the proxy forwards its clients' bodies as they come.
pub struct Upstream<B = Incoming> {
    idle: Mutex<IdleConnections<B>>,
    connect_timeout: Duration,
}

struct IdleConnections<B> {
    /// Most recently returned last.
    by_endpoint: HashMap<SocketAddr, VecDeque<Idle<B>>>,
    returns: u64,
}

impl<B> Idle<B> {
    fn usable(&self) -> bool {
        !self.sender.is_closed() && self.since.elapsed() <= IDLE_TIMEOUT
    }
}

impl<B> Upstream<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// An empty pool whose new connections must be made within
    /// `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(IdleConnections {
                by_endpoint: HashMap::default(),
                returns: 0,
            }),
            connect_timeout,
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) to `addr` on an idle
    /// connection, or on a new one.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        mut req: Request<B>,
    ) -> Result<Response<PooledBody<B>>, UpstreamError> {
        loop {
            let (mut sender, reused) = match self.checkout(addr).await {
                Some(sender) => (sender, true),
                None => (self.connect(addr).await?, false),
            };
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    // After a 101 the connection belongs to the tunnel.
                    let back =
                        (resp.status() != hyper::StatusCode::SWITCHING_PROTOCOLS).then(|| Return {
                            pool: self.clone(),
                            addr,
                            sender,
                        });
                    return Ok(resp.map(|body| PooledBody { body, back }));
                }
                // A reused connection that the upstream closed as the
                // request went out: hyper hands back a request it did not
                // write, and it goes out again on another connection.
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => {
                        debug!(upstream = %addr, error = %e.error(), "pooled connection closed; retrying");
                        req = unsent;
                    }
                    _ => return Err(UpstreamError::Http(e.into_error())),
                },
            }
        }
    }

    /// The most recently used idle connection to `addr` that is still open.
    async fn checkout(&self, addr: SocketAddr) -> Option<SendRequest<B>> {
        loop {
            // An emptied list stays: removing it would cost an allocation
            // when the connection comes back.
            let mut idle = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .by_endpoint
                .get_mut(&addr)?
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

    async fn connect(&self, addr: SocketAddr) -> Result<SendRequest<B>, UpstreamError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => return Err(UpstreamError::Connect { addr, error }),
            Err(_) => {
                return Err(UpstreamError::ConnectTimeout {
                    addr,
                    after: self.connect_timeout,
                });
            }
        };
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(tcp))
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
}

impl<B> Upstream<B> {
    fn put_back(&self, addr: SocketAddr, sender: SendRequest<B>) {
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
        let list = idle.by_endpoint.entry(addr).or_default();
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
    addr: SocketAddr,
    sender: SendRequest<B>,
}

/// An upstream response body. Its connection goes back to the pool when the
/// body has been read to the end; a body dropped before its end (the client
/// went away) closes the connection instead, since the rest of the response
/// would still be in it.
pub struct PooledBody<B = Incoming> {
    body: Incoming,
    back: Option<Return<B>>,
}

impl<B> Body for PooledBody<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
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
            r.pool.put_back(r.addr, r.sender);
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
