//! h2 connections under the limits HTTP/1.1 has.
//!
//! hyper's h2 server has no header-read or idle timeout: a connection that
//! sends no preface, only a preface, or a HEADERS frame without
//! END_HEADERS stays open for good. So a watchdog runs next to hyper's
//! connection: requests count themselves in and out of the connection's
//! [`Activity`], and a thin reader in front of hyper notes when a header
//! block begins and ends (hyper does not say). When a limit is due, the
//! connection gets a GOAWAY and a bounded drain, then is closed hard.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::body::Body;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Activity, CLOSE_GRACE, CloseReason, ConnLimits, DRAIN_CHECK};

/// Serves one h2 connection until the client leaves, a limit closes it, or
/// `shutdown` flips; returns the limit that closed it, if one did.
/// `service` answers requests and reports them to `activity` (see
/// [`Activity::start`]).
pub async fn serve<S, F, Fut, B>(
    stream: S,
    limits: &ConnLimits,
    activity: Arc<Activity>,
    service: F,
    shutdown: watch::Receiver<bool>,
) -> Option<CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<hyper::Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_h2(stream, limits, false, activity, service, shutdown).await
}

/// [`serve`], offering `SETTINGS_ENABLE_CONNECT_PROTOCOL` (RFC 8441), so
/// that clients may open WebSockets with an extended CONNECT; the service
/// answers those, and tunnels an accepted one with [`tunnel`].
pub async fn serve_with_websockets<S, F, Fut, B>(
    stream: S,
    limits: &ConnLimits,
    activity: Arc<Activity>,
    service: F,
    shutdown: watch::Receiver<bool>,
) -> Option<CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<hyper::Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    serve_h2(stream, limits, true, activity, service, shutdown).await
}

/// Copies bytes both ways between an h2 stream whose extended CONNECT was
/// answered 2xx (`client`) and the upstream side of a `101` (`upstream`),
/// until either side closes or a close of the connection is asked for (a
/// revoked client), as the HTTP/1.1 tunnel does. The tunnel counts as a
/// request in flight while it is open, so the connection is not idle and a
/// drain waits for it.
pub async fn tunnel(client: OnUpgrade, upstream: OnUpgrade, activity: Arc<Activity>) {
    let _in_flight = activity.start();
    let copy = async {
        let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) else {
            return;
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    };
    tokio::select! {
        () = copy => {}
        _ = activity.close_asked() => {}
    }
}

async fn serve_h2<S, F, Fut, B>(
    stream: S,
    limits: &ConnLimits,
    extended_connect: bool,
    activity: Arc<Activity>,
    service: F,
    mut shutdown: watch::Receiver<bool>,
) -> Option<CloseReason>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<hyper::Response<B>, Infallible>> + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    if extended_connect {
        builder.enable_connect_protocol();
    }
    if let Some(ka) = limits.h2_keep_alive {
        builder
            .keep_alive_interval(ka.interval)
            .keep_alive_timeout(ka.timeout);
    }
    let io = TokioIo::new(Frames {
        inner: stream,
        activity: activity.clone(),
        scan: Scan::default(),
    });
    // Boxed: the connection's task is then not sized for hyper's session.
    let mut served = Box::pin(builder.serve_connection(io, hyper::service::service_fn(service)));
    let max_age_at = limits.max_age_at(&activity);
    let reason = tokio::select! {
        r = served.as_mut() => {
            return match r {
                // The client left; perhaps after a request asked to close.
                Ok(()) => activity.close_requested(),
                // On h2 only the keep-alive PING times out inside hyper.
                Err(e) if e.is_timeout() => Some(CloseReason::KeepAliveTimeout),
                Err(e) => {
                    tracing::debug!(error = %e, "connection ended");
                    None
                }
            };
        }
        r = watchdog(&activity, limits, max_age_at) => Some(r),
        _ = shutdown.changed() => None,
    };
    tracing::trace!(
        reason = reason.map(CloseReason::as_str),
        "closing the h2 connection"
    );
    served.as_mut().graceful_shutdown();
    drain(served.as_mut(), &activity, limits).await;
    reason
}

/// Resolves with the first limit that is due.
async fn watchdog(
    activity: &Activity,
    limits: &ConnLimits,
    max_age_at: Option<Instant>,
) -> CloseReason {
    loop {
        let next = match activity.due(limits, max_age_at, Instant::now()) {
            Ok(reason) => return reason,
            Err(next) => next,
        };
        // A head that begins, or a close asked for, moves the deadline.
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = activity.wake.notified() => {}
        }
    }
}

/// Lets a connection that was sent GOAWAY finish by itself, within the
/// drain timeout. h2 waits for the client to answer a PING before it
/// closes, and a silent client never does: once nothing is in flight and
/// [`CLOSE_GRACE`] has passed, the connection is closed hard too.
async fn drain<F: Future>(mut served: Pin<&mut F>, activity: &Activity, limits: &ConnLimits) {
    let started = Instant::now();
    let hard_at = started + limits.drain_timeout;
    let mut check_at = (started + CLOSE_GRACE).min(hard_at);
    loop {
        tokio::select! {
            _ = served.as_mut() => return,
            _ = tokio::time::sleep_until(check_at) => {
                let now = Instant::now();
                if now >= hard_at || activity.in_flight() == 0 {
                    return;
                }
                check_at = (now + DRAIN_CHECK).min(hard_at);
            }
        }
    }
}

const FRAME_HEADER_LEN: usize = 9;
const PREFACE_LEN: u8 = 24;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;

/// The client's stream, read through a [`Scan`] for header blocks.
struct Frames<S> {
    inner: S,
    activity: Arc<Activity>,
    scan: Scan,
}

/// Follows the client's frames by their 9-byte headers, skipping payloads,
/// to tell when a header block (HEADERS, then CONTINUATION frames until
/// END_HEADERS) begins and ends. A block counts as begun from its HEADERS
/// frame's header until its last frame's payload has arrived, so a frame
/// trickled byte by byte counts too.
#[derive(Debug)]
struct Scan {
    /// Bytes of the client preface still to skip.
    preface_left: u8,
    /// The frame header being read.
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to skip.
    payload_left: u32,
    /// Whether the current frame ends a header block.
    ends_block: bool,
    /// Whether a header block is open.
    in_block: bool,
}

impl Default for Scan {
    fn default() -> Self {
        Self {
            preface_left: PREFACE_LEN,
            header: [0; FRAME_HEADER_LEN],
            header_len: 0,
            payload_left: 0,
            ends_block: false,
            in_block: false,
        }
    }
}

/// What a read did to the header block.
#[derive(Debug, PartialEq, Eq)]
enum Block {
    /// Nothing to tell: none was open and none is, or the same one is
    /// still open. Most reads: a block usually begins and ends in one.
    Same,
    /// A block is open that was not at the start of the read.
    Began,
    /// The block open at the start of the read has ended.
    Ended,
}

impl Scan {
    fn feed(&mut self, mut bytes: &[u8]) -> Block {
        let was_open = self.in_block;
        let mut ended = false;
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = bytes.len().min(usize::from(self.preface_left));
                bytes = &bytes[n..];
                self.preface_left -= n as u8;
            } else if self.payload_left > 0 {
                let n = bytes.len().min(self.payload_left as usize);
                bytes = &bytes[n..];
                self.payload_left -= n as u32;
                if self.payload_left == 0 {
                    ended |= self.frame_end();
                }
            } else {
                let n = bytes.len().min(FRAME_HEADER_LEN - self.header_len);
                self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
                self.header_len += n;
                bytes = &bytes[n..];
                if self.header_len == FRAME_HEADER_LEN {
                    self.header_len = 0;
                    let h = self.header;
                    let (kind, flags) = (h[3], h[4]);
                    match kind {
                        HEADERS => {
                            self.in_block = true;
                            self.ends_block = flags & END_HEADERS != 0;
                        }
                        CONTINUATION => self.ends_block = flags & END_HEADERS != 0,
                        _ => self.ends_block = false,
                    }
                    self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]);
                    if self.payload_left == 0 {
                        ended |= self.frame_end();
                    }
                }
            }
        }
        match (was_open, self.in_block) {
            // A block that ended and another one begun count as new.
            (false, true) => Block::Began,
            (true, true) if ended => Block::Began,
            (true, false) => Block::Ended,
            _ => Block::Same,
        }
    }

    /// The current frame's payload is all in; whether a block ended.
    fn frame_end(&mut self) -> bool {
        let ends = self.ends_block && self.in_block;
        if ends {
            self.in_block = false;
        }
        self.ends_block = false;
        ends
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Frames<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let this = &mut *self;
            match this.scan.feed(&buf.filled()[before..]) {
                Block::Same => {}
                Block::Began => {
                    this.activity.begin_head();
                    this.activity.wake.notify_one();
                }
                Block::Ended => this.activity.end_head(),
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Frames<S> {
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

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = len.to_be_bytes()[1..].to_vec();
        f.extend([kind, flags]);
        f.extend(stream.to_be_bytes());
        f.extend(payload);
        f
    }

    fn settings() -> Vec<u8> {
        frame(0x4, 0, 0, &[])
    }

    #[test]
    fn a_whole_request_in_one_read_tells_nothing() {
        let mut s = Scan::default();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(settings());
        bytes.extend(frame(HEADERS, END_HEADERS | 0x1, 1, &[0x82, 0x87, 0x84]));
        assert_eq!(s.feed(&bytes), Block::Same);
        assert!(!s.in_block);
    }

    #[test]
    fn a_block_without_end_headers_stays_open_until_its_continuation_ends_it() {
        let mut s = Scan::default();
        assert_eq!(s.feed(PREFACE), Block::Same);
        assert_eq!(s.feed(&frame(HEADERS, 0x1, 1, &[0x82])), Block::Began);
        assert_eq!(s.feed(&frame(CONTINUATION, 0, 1, &[0x87])), Block::Same);
        assert_eq!(
            s.feed(&frame(CONTINUATION, END_HEADERS, 1, &[0x84])),
            Block::Ended
        );
        // DATA and other frames never open one.
        assert_eq!(s.feed(&frame(0x0, 0x1, 1, b"body")), Block::Same);
        assert_eq!(s.feed(&frame(0x6, 0, 0, &[0; 8])), Block::Same);
    }

    #[test]
    fn a_trickled_headers_frame_is_open_until_its_last_byte() {
        let mut s = Scan::default();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(HEADERS, END_HEADERS, 1, &[0x82, 0x87, 0x84]));
        let (head, last) = bytes.split_at(bytes.len() - 1);
        let mut told = Vec::new();
        for b in head {
            told.push(s.feed(std::slice::from_ref(b)));
        }
        assert_eq!(told.iter().filter(|t| **t == Block::Began).count(), 1);
        assert!(!told.contains(&Block::Ended));
        assert_eq!(s.feed(last), Block::Ended);
    }

    #[test]
    fn a_block_that_ends_and_another_that_begins_in_one_read_is_new() {
        let mut s = Scan::default();
        s.feed(PREFACE);
        assert_eq!(s.feed(&frame(HEADERS, 0, 1, &[0x82])), Block::Began);
        let mut bytes = frame(CONTINUATION, END_HEADERS, 1, &[0x84]);
        bytes.extend(frame(HEADERS, 0, 3, &[0x82]));
        assert_eq!(s.feed(&bytes), Block::Began);
    }
}
