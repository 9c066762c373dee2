//! HTTP/1.1 connections that hold no HTTP buffers while idle.
//!
//! hyper keeps its read and write buffers for as long as a connection
//! lives, and an edge proxy holds thousands of idle keep-alive
//! connections. So, like nginx, a connection that has been idle for a
//! moment ends its hyper session *without* closing the TLS stream, and a
//! fresh session starts when the next request's first byte arrives. While
//! it waits, the connection holds only its TLS state.
//!
//! Waiting for that byte is also where the keep-alive idle timeout lives,
//! so it is separate from the header-read (slowloris) timeout, which hyper
//! applies once a request has begun.
//!
//! WebSocket and other upgrades end a hyper session too: hyper hands the
//! stream back after the `101`, and the tunnel runs in the connection's own
//! task, so it counts as the connection it is.
//!
//! Callers pass the stream boxed: moved by value, its TLS state would be
//! laid out again in every future that holds it, and the connection's task
//! would be much larger while idle (sizes in docs/benchmarks-proxy.md).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, SizeHint};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;

/// How long a connection must be quiet before its hyper session is ended.
/// Long enough that back-to-back requests never pay for a new session;
/// shortened to a quarter of the header-read timeout, which hyper also runs
/// while it waits, so the release comes first with room to spare.
const RELEASE_AFTER: Duration = Duration::from_millis(500);

/// What the connection's requests tell the driver.
pub struct Activity {
    /// When the connection started; `last` counts from here.
    base: tokio::time::Instant,
    /// Milliseconds from `base` to the last byte moved or response finished.
    last: AtomicU64,
    /// Requests whose response has not been fully sent yet.
    in_flight: AtomicUsize,
    /// Bytes arrived while no request was in flight: a request head may be
    /// half read, and ending the session would restart its header timeout.
    head_pending: AtomicBool,
    /// The upstream side of an accepted upgrade, for the driver to tunnel.
    upgrade: Mutex<Option<OnUpgrade>>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            base: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            head_pending: AtomicBool::new(false),
            upgrade: Mutex::new(None),
        }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last.store(ms, Ordering::Release);
    }

    /// When the connection will have been quiet for `quiet`, counting from
    /// its last activity.
    fn quiet_at(&self, quiet: Duration) -> tokio::time::Instant {
        self.base + Duration::from_millis(self.last.load(Ordering::Acquire)) + quiet
    }

    /// Marks a request as started; the guard marks it finished when the
    /// response body is dropped, which hyper does once it is sent.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_pending.store(false, Ordering::Release);
        InFlight(self.clone())
    }

    /// Hands the upstream side of a `101 Switching Protocols` to the driver.
    pub fn upgrade_to(&self, upstream: OnUpgrade) {
        if let Ok(mut slot) = self.upgrade.lock() {
            *slot = Some(upstream);
        }
    }

    fn take_upgrade(&self) -> Option<OnUpgrade> {
        self.upgrade.lock().ok()?.take()
    }

    /// Whether hyper is between requests: nothing in flight, no head begun.
    fn between_requests(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0 && !self.head_pending.load(Ordering::Acquire)
    }
}

/// A request in flight; see [`Activity::start`].
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.touch();
    }
}

/// A response body that keeps its request counted until it is dropped.
pub struct TrackedBody<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> TrackedBody<B> {
    /// Wraps `inner`, holding `in_flight` until the body is done with.
    pub fn new(inner: B, in_flight: InFlight) -> Self {
        Self {
            inner,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stream with bytes to replay before reading on: what hyper had read
/// but not used when its session ended. Notes activity as it goes.
struct Replay<S> {
    pending: Bytes,
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = if self.pending.is_empty() {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        } else {
            let n = self.pending.len().min(buf.remaining());
            buf.put_slice(&self.pending[..n]);
            self.pending.advance(n);
            Poll::Ready(Ok(()))
        };
        // Replayed bytes count too: a head begun before a release must keep
        // its header timeout, or a client could trickle one byte a session.
        if buf.filled().len() > before {
            let a = &self.activity;
            a.touch();
            if a.in_flight.load(Ordering::Acquire) == 0 {
                a.head_pending.store(true, Ordering::Release);
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Settings of [`serve`].
pub struct Settings {
    /// hyper's header-read timeout, once a request has begun.
    pub header_read_timeout: Duration,
    /// hyper's largest buffered request head.
    pub max_buf_size: usize,
    /// How long a keep-alive connection may wait for its next request.
    pub idle_timeout: Duration,
}

/// Serves one HTTP/1.1 connection until the client leaves, it idles out, or
/// `shutdown` flips. `service` answers requests; it reports to `activity`
/// (see [`Activity::start`] and [`Activity::upgrade_to`]). Its futures are
/// `Unpin` (boxed) because hyper needs that to hand the stream back.
pub async fn serve<S, F, Fut, B>(
    mut stream: S,
    settings: &Settings,
    activity: Arc<Activity>,
    service: F,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + Unpin,
    Fut: Future<Output = Result<hyper::Response<B>, Infallible>> + Send + Unpin,
    B: Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut service = hyper::service::service_fn(service);
    // The first request may already be on its way: start at once.
    let mut pending = Bytes::new();
    loop {
        // Boxed: the session (hyper's connection and its timers) then takes
        // memory only while it runs, not for the connection's whole life.
        let io = Replay {
            pending,
            inner: stream,
            activity: activity.clone(),
        };
        let ended = Box::pin(session(io, service, settings, &activity, &mut shutdown)).await;
        service = ended.service;
        (stream, pending) = (ended.io.inner, ended.io.pending);
        if let Some(upstream) = activity.take_upgrade() {
            let client = Replay {
                pending,
                inner: stream,
                activity,
            };
            tunnel(client, upstream).await;
            return;
        }
        if !ended.released {
            let _ = stream.shutdown().await;
            return;
        }
        if pending.is_empty() {
            let mut byte = [0u8; 1];
            let read = tokio::select! {
                r = tokio::time::timeout(settings.idle_timeout, stream.read(&mut byte)) => r,
                _ = shutdown.changed() => Ok(Ok(0)),
            };
            match read {
                Ok(Ok(n)) if n > 0 => pending = Bytes::copy_from_slice(&byte[..n]),
                // End of stream, an error, the idle timeout or a drain.
                _ => {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
        }
    }
}

/// What is left when a hyper session ends.
struct Ended<S, Svc> {
    /// The stream, with the bytes hyper read but did not use.
    io: Replay<S>,
    /// The service, for the next session.
    service: Svc,
    /// Whether the session was ended for being idle, so the connection
    /// lives on; otherwise it is over (closed, failed or drained).
    released: bool,
}

/// Drives one hyper session until it ends by itself, or has been quiet
/// long enough to release, or a drain asks it to finish.
async fn session<S, Svc, B>(
    io: Replay<S>,
    service: Svc,
    settings: &Settings,
    activity: &Activity,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended<S, Svc>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::HttpService<hyper::body::Incoming, ResBody = B> + Unpin,
    Svc::Future: Unpin,
    Svc::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let release_after = RELEASE_AFTER.min(settings.header_read_timeout / 4);
    let mut http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_buf_size)
        .serve_connection(TokioIo::new(io), service);
    let (mut released, mut draining, mut failed) = (false, false, false);
    let mut check_at = tokio::time::Instant::now() + release_after;
    loop {
        let stop = tokio::select! {
            r = std::future::poll_fn(|cx| http.poll_without_shutdown(cx)) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended");
                    failed = true;
                }
                break;
            }
            _ = tokio::time::sleep_until(check_at), if !released => {
                let now = tokio::time::Instant::now();
                let quiet_at = activity.quiet_at(release_after);
                let between = activity.between_requests();
                if between && quiet_at <= now {
                    true
                } else {
                    // Not quiet long enough yet: look again when it will
                    // be; busy (a slow upstream, a long body): later.
                    check_at = if between { quiet_at } else { now + release_after };
                    false
                }
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
                true
            }
        };
        if stop && !released {
            tracing::trace!(draining, "ending the HTTP/1.1 session, keeping the stream");
            released = true;
            Pin::new(&mut http).graceful_shutdown();
        }
    }
    let parts = http.into_parts();
    let mut io = parts.io.into_inner();
    // hyper's unread bytes came before any not replayed yet. Copied: even
    // an empty `read_buf` still owns hyper's whole read buffer.
    io.pending = if parts.read_buf.is_empty() && io.pending.is_empty() {
        Bytes::new()
    } else {
        [parts.read_buf, io.pending].concat().into()
    };
    Ended {
        io,
        service: parts.service,
        released: released && !draining && !failed,
    }
}

/// Copies bytes both ways between the client and the upstream until either
/// side closes.
async fn tunnel<S>(mut client: Replay<S>, upstream: OnUpgrade)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if let Ok(upstream) = upstream.await {
        let mut upstream = TokioIo::new(upstream);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}
