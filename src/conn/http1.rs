//! HTTP/1.1 connections that hold no HTTP buffers while idle.
//!
//! hyper keeps its read and write buffers for as long as a connection
//! lives, and an edge proxy holds thousands of idle keep-alive
//! connections. So, like nginx, a connection that has been idle for a
//! moment ends its hyper session *without* closing the TLS stream, and a
//! fresh session starts when the next request's first byte arrives. While
//! it waits, the connection holds only its TLS state.
//!
//! Waiting for that byte is also where the keep-alive idle timeout and the
//! maximum age of an idle connection live, so the idle timeout is separate
//! from the header-read (slowloris) timeout, which hyper applies once a
//! session runs.
//!
//! WebSocket and other upgrades end a hyper session too: hyper hands the
//! stream back after the `101`, and the tunnel runs in the connection's own
//! task, so it counts as the connection it is. Tunnels have no limits.
//!
//! Callers pass the stream boxed: moved by value, its TLS state would be
//! laid out again in every future that holds it, and the connection's task
//! would be much larger while idle (sizes in docs/benchmarks-proxy.md).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::Body;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Activity, CLOSE_GRACE, CloseReason, ConnLimits, never};

/// How long a connection must be quiet before its hyper session is ended.
/// Long enough that back-to-back requests never pay for a new session;
/// shortened to a quarter of the header-read timeout, which hyper also runs
/// while it waits, so the release comes first with room to spare.
const RELEASE_AFTER: Duration = Duration::from_millis(500);

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
            if a.between_requests() {
                a.begin_head();
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

/// What a session needs to know, fixed for the connection.
struct Session {
    header_read_timeout: Duration,
    max_header_bytes: usize,
    release_after: Duration,
    max_age_at: Option<Instant>,
    drain_timeout: Duration,
}

/// Serves one HTTP/1.1 connection until the client leaves, a limit closes
/// it, or `shutdown` flips; returns the limit that closed it, if one did.
/// `service` answers requests; it reports to `activity` (see
/// [`Activity::start`] and [`Activity::upgrade_to`]). Its futures are
/// `Unpin` (boxed) because hyper needs that to hand the stream back.
pub async fn serve<S, F, Fut, B>(
    mut stream: S,
    limits: &ConnLimits,
    activity: Arc<Activity>,
    service: F,
    mut shutdown: watch::Receiver<bool>,
) -> Option<CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + Unpin,
    Fut: Future<Output = Result<hyper::Response<B>, Infallible>> + Send + Unpin,
    B: Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let session_settings = Session {
        header_read_timeout: limits.header_read_timeout,
        max_header_bytes: limits.max_header_bytes,
        release_after: RELEASE_AFTER.min(limits.header_read_timeout / 4),
        max_age_at: limits.max_age_at(&activity),
        drain_timeout: limits.drain_timeout,
    };
    // A head that reached the service is complete.
    let heads = activity.clone();
    let mut service = hyper::service::service_fn(move |req| {
        heads.end_head();
        service(req)
    });
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
        let ended = Box::pin(session(
            io,
            service,
            &session_settings,
            &activity,
            &mut shutdown,
        ))
        .await;
        service = ended.service;
        (stream, pending) = (ended.io.inner, ended.io.pending);
        if let Some(upstream) = activity.take_upgrade() {
            let closing = activity.clone();
            let client = Replay {
                pending,
                inner: stream,
                activity,
            };
            // A tunnel ends when either side closes, or when a close is
            // asked for (a revoked client); a drain leaves it be.
            return tokio::select! {
                () = tunnel(client, upstream) => None,
                r = closing.closing() => Some(r),
            };
        }
        if let End::Closed(reason) = ended.end {
            close(&mut stream).await;
            return reason;
        }
        if pending.is_empty() {
            let idle_at = activity.quiet_at(limits.idle_timeout);
            let (until, limit) = match session_settings.max_age_at {
                Some(at) if at < idle_at => (at, CloseReason::MaxAge),
                _ => (idle_at, CloseReason::IdleTimeout),
            };
            let mut byte = [0u8; 1];
            let read = tokio::select! {
                r = stream.read(&mut byte) => Ok(r),
                _ = tokio::time::sleep_until(until) => Err(Some(limit)),
                r = activity.closing() => Err(Some(r)),
                _ = shutdown.changed() => Err(None),
            };
            match read {
                Ok(Ok(n)) if n > 0 => pending = Bytes::copy_from_slice(&byte[..n]),
                // End of stream or an error: nothing to count.
                Ok(_) => {
                    close(&mut stream).await;
                    return None;
                }
                // A limit, or a drain.
                Err(reason) => {
                    close(&mut stream).await;
                    return reason;
                }
            }
        }
    }
}

/// Sends close_notify and FIN, unless the client does not read them.
async fn close<S: AsyncWrite + Unpin>(stream: &mut S) {
    let _ = tokio::time::timeout(CLOSE_GRACE, stream.shutdown()).await;
}

/// How a hyper session ended.
enum End {
    /// Ended for being idle: the connection lives on.
    Released,
    /// The connection is over (closed, failed or drained), and the limit
    /// that closed it, if one did.
    Closed(Option<CloseReason>),
}

/// What is left when a hyper session ends.
struct Ended<S, Svc> {
    /// The stream, with the bytes hyper read but did not use.
    io: Replay<S>,
    /// The service, for the next session.
    service: Svc,
    end: End,
}

/// Drives one hyper session until it ends by itself, or has been quiet
/// long enough to release, or a limit or a drain asks it to finish; a
/// finish takes at most the drain timeout.
async fn session<S, Svc, B>(
    io: Replay<S>,
    service: Svc,
    settings: &Session,
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
    let release_after = settings.release_after;
    // hyper's own read buffer must hold at least 8 KiB; the head limit is
    // exact, whatever the buffer grew to (max_buf_size alone is not: a
    // head read in one go past it was accepted whole).
    let mut http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192))
        .max_header_size(settings.max_header_bytes)
        .serve_connection(TokioIo::new(io), service);
    let (mut released, mut draining, mut failed) = (false, false, false);
    let mut reason = None;
    let mut check_at = Instant::now() + release_after;
    let max_age_at = settings.max_age_at.unwrap_or_else(never);
    let mut hard_at = never();
    loop {
        let stop = tokio::select! {
            r = std::future::poll_fn(|cx| http.poll_without_shutdown(cx)) => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended");
                    // hyper's header-read timeout.
                    if e.is_timeout() {
                        reason = Some(CloseReason::HeaderTimeout);
                    }
                    failed = true;
                }
                break;
            }
            _ = tokio::time::sleep_until(check_at), if !released => {
                let now = Instant::now();
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
            _ = tokio::time::sleep_until(max_age_at), if !draining => {
                draining = true;
                reason = Some(CloseReason::MaxAge);
                true
            }
            r = activity.closing(), if !draining => {
                draining = true;
                reason = Some(r);
                true
            }
            // The drain took too long: close hard.
            _ = tokio::time::sleep_until(hard_at), if draining => {
                failed = true;
                break;
            }
        };
        if stop && draining && hard_at > Instant::now() + settings.drain_timeout {
            hard_at = Instant::now() + settings.drain_timeout;
        }
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
    let end = if released && !draining && !failed {
        End::Released
    } else {
        // hyper may end the session by itself before the close a request
        // asked for is seen (a 408 leaves its body unread): still that.
        End::Closed(reason.or_else(|| activity.close_requested()))
    };
    Ended {
        io,
        service: parts.service,
        end,
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
