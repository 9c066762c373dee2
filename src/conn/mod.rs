//! One client connection's HTTP limits, shared by the proxy and the webhook.
//!
//! HTTP/1.1 ([`http1`]) and h2 ([`h2`]) run the same idea: a connection's
//! requests count themselves in and out of its [`Activity`], and the
//! connection's driver closes it when a deadline derived from that passes:
//!
//! - the first request not complete within the header-read timeout (h2's
//!   `preface_timeout`; on HTTP/1.1 hyper's header-read timeout),
//! - a request head begun but not finished in time (`header_timeout`),
//! - no request in flight for the idle timeout (`idle_timeout`),
//! - the connection's maximum age (`max_age`),
//! - or a close one of its requests asked for ([`Activity::close`]), such as
//!   a request body that did not arrive in time (`body_timeout`).
//!
//! Closing is graceful first (h2 GOAWAY, HTTP/1.1 "finish this response"),
//! then bounded: see [`ConnLimits::drain_timeout`].

pub mod h2;
pub mod http1;

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Body, Frame, SizeHint};
use hyper::upgrade::OnUpgrade;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Why a limit closed a connection: the `reason` label of
/// `tlsward_proxy_connections_closed_total` and
/// `tlsward_webhook_connections_closed_total`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// `preface_timeout`: h2 only; no complete first request within the
    /// header-read timeout of the handshake (no preface, a preface alone,
    /// or a first header block never finished).
    PrefaceTimeout,
    /// `header_timeout`: a request head was begun but not completed within
    /// the header-read timeout (on HTTP/1.1 also the first one).
    HeaderTimeout,
    /// `body_timeout`: a request body did not arrive in time (webhook).
    BodyTimeout,
    /// `idle_timeout`: no request in flight for the idle timeout.
    IdleTimeout,
    /// `keepalive_timeout`: h2 only; a keep-alive PING went unanswered.
    KeepAliveTimeout,
    /// `max_age`: the connection reached its maximum age.
    MaxAge,
    /// `client_revoked`: proxy only; a new snapshot's CRLs list the
    /// connection's client certificate.
    ClientRevoked,
    /// `client_untrusted`: proxy only; under a new snapshot the client's
    /// certificate no longer verifies (trust anchors changed, or a
    /// certificate is now required and there is none).
    ClientUntrusted,
    /// `client_not_allowed`: proxy only; a new snapshot's allow-list no
    /// longer names the client.
    ClientNotAllowed,
}

impl CloseReason {
    /// Every reason, in the order of their codes.
    pub const ALL: [CloseReason; 9] = [
        CloseReason::PrefaceTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::BodyTimeout,
        CloseReason::IdleTimeout,
        CloseReason::KeepAliveTimeout,
        CloseReason::MaxAge,
        CloseReason::ClientRevoked,
        CloseReason::ClientUntrusted,
        CloseReason::ClientNotAllowed,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::PrefaceTimeout => "preface_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::BodyTimeout => "body_timeout",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::KeepAliveTimeout => "keepalive_timeout",
            CloseReason::MaxAge => "max_age",
            CloseReason::ClientRevoked => "client_revoked",
            CloseReason::ClientUntrusted => "client_untrusted",
            CloseReason::ClientNotAllowed => "client_not_allowed",
        }
    }

    /// 1-based, so that 0 can mean "none" in an atomic.
    fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .map_or(0, |i| i as u8 + 1)
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

/// h2 keep-alive PINGs (hyper's `keep_alive_interval`/`keep_alive_timeout`).
#[derive(Clone, Copy, Debug)]
pub struct KeepAlive {
    /// How long a connection may be silent before a PING is sent.
    pub interval: Duration,
    /// How long the PING's answer may take before the connection is closed.
    pub timeout: Duration,
}

/// The limits a connection's driver enforces, HTTP/1.1 and h2 alike.
#[derive(Clone, Debug)]
pub struct ConnLimits {
    /// A request head must be complete this long after it began; on h2 the
    /// first request must also be complete this long after the handshake.
    pub header_read_timeout: Duration,
    /// How long a connection may have no request in flight.
    pub idle_timeout: Duration,
    /// Largest request head: HTTP/1.1's head in bytes (431 above it), h2's
    /// header list size as RFC 9113 counts it.
    pub max_header_bytes: usize,
    /// How old a connection may get before it is asked to close; `None`
    /// for no limit. Each connection's age is up to 10% shorter, so that
    /// connections opened together do not all reconnect together.
    pub max_age: Option<Duration>,
    /// After a limit or a shutdown asked a connection to close: how long
    /// its in-flight requests may take before it is closed hard.
    pub drain_timeout: Duration,
    /// h2 keep-alive PINGs; `None` for none.
    pub h2_keep_alive: Option<KeepAlive>,
}

impl ConnLimits {
    /// The limits as flags give them, in seconds; a maximum age or a
    /// keep-alive interval of 0 turns that off.
    pub fn from_flags(
        header_read_timeout: u64,
        idle_timeout: u64,
        max_header_bytes: usize,
        max_age: u64,
        drain_timeout: u64,
        h2_keep_alive_interval: u64,
        h2_keep_alive_timeout: u64,
    ) -> Self {
        let secs = Duration::from_secs;
        Self {
            header_read_timeout: secs(header_read_timeout),
            idle_timeout: secs(idle_timeout),
            max_header_bytes,
            max_age: (max_age > 0).then(|| secs(max_age)),
            drain_timeout: secs(drain_timeout),
            h2_keep_alive: (h2_keep_alive_interval > 0).then(|| KeepAlive {
                interval: secs(h2_keep_alive_interval),
                timeout: secs(h2_keep_alive_timeout),
            }),
        }
    }

    /// When `activity`'s connection reaches its maximum age.
    fn max_age_at(&self, activity: &Activity) -> Option<Instant> {
        use std::hash::BuildHasher;
        let age = self.max_age?;
        // A fresh RandomState has fresh keys: a cheap random number.
        let spread = std::collections::hash_map::RandomState::new().hash_one(()) % 1000;
        let jitter = age / 10 * spread as u32 / 1000;
        Some(activity.base + age.saturating_sub(jitter))
    }
}

/// Time allowed, after a connection was asked to close, for the GOAWAY to
/// reach the client and a request racing it to arrive, before a connection
/// with nothing in flight is closed hard (h2 waits for the client's answer
/// to a PING, which a silent client never sends).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How often a draining connection checks whether it is done.
const DRAIN_CHECK: Duration = Duration::from_millis(250);

/// Far enough away to never fire; tokio caps it.
fn never() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// What a connection's requests tell its driver.
pub struct Activity {
    /// When the connection started serving; the other times count from here.
    base: Instant,
    /// Milliseconds from `base` to the last byte moved or response finished.
    last: AtomicU64,
    /// Requests whose response has not been fully sent yet.
    in_flight: AtomicUsize,
    /// Whether a request has started on this connection.
    started: AtomicBool,
    /// 1 + milliseconds from `base` to when the request head being received
    /// began; 0 when none is. On HTTP/1.1, bytes arrived between requests.
    head_since: AtomicU64,
    /// The [`CloseReason::code`] of a close asked for, or 0.
    close: AtomicU8,
    /// Wakes the driver: a close was asked for, or a head began (h2).
    wake: Notify,
    /// Wakes every h2 WebSocket tunnel when a close is asked for: `wake`
    /// wakes one waiter, and that one is the driver.
    tunnels: Notify,
    /// HTTP/1.1: the upstream side of an accepted upgrade, to tunnel.
    upgrade: Mutex<Option<OnUpgrade>>,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            last: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started: AtomicBool::new(false),
            head_since: AtomicU64::new(0),
            close: AtomicU8::new(0),
            wake: Notify::new(),
            tunnels: Notify::new(),
            upgrade: Mutex::new(None),
        }
    }
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    fn touch(&self) {
        self.last.store(self.now_ms(), Ordering::Release);
    }

    /// When the connection will have been quiet for `quiet`, counting from
    /// its last activity.
    fn quiet_at(&self, quiet: Duration) -> Instant {
        self.at(self.last.load(Ordering::Acquire)) + quiet
    }

    /// Marks a request as started; the guard marks it finished when the
    /// response body is dropped, which hyper does once it is sent.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.store(true, Ordering::Release);
        InFlight(self.clone())
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Asks the connection's driver to close the connection, gracefully and
    /// then within the drain timeout. The first reason asked for is the one
    /// counted.
    pub fn close(&self, reason: CloseReason) {
        let _ = self
            .close
            .compare_exchange(0, reason.code(), Ordering::AcqRel, Ordering::Acquire);
        self.wake.notify_one();
        self.tunnels.notify_waiters();
    }

    /// Resolves once a close is asked for; any number of tunnels may wait.
    async fn close_asked(&self) -> CloseReason {
        loop {
            // Registered before the check, so a close in between still wakes.
            let notified = self.tunnels.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.close_requested() {
                return r;
            }
            notified.await;
        }
    }

    fn close_requested(&self) -> Option<CloseReason> {
        CloseReason::from_code(self.close.load(Ordering::Acquire))
    }

    /// Resolves once a close is asked for.
    async fn closing(&self) -> CloseReason {
        loop {
            if let Some(r) = self.close_requested() {
                return r;
            }
            self.wake.notified().await;
        }
    }

    /// A request head began now.
    fn begin_head(&self) {
        self.head_since.store(self.now_ms() + 1, Ordering::Release);
    }

    fn end_head(&self) {
        self.head_since.store(0, Ordering::Release);
    }

    /// When the head being received began, if one is.
    fn head_began(&self) -> Option<Instant> {
        match self.head_since.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.at(ms - 1)),
        }
    }

    /// Whether the connection is between requests: nothing in flight, no
    /// head begun.
    fn between_requests(&self) -> bool {
        self.in_flight() == 0 && self.head_since.load(Ordering::Acquire) == 0
    }

    /// Hands the upstream side of a `101 Switching Protocols` to the
    /// HTTP/1.1 driver.
    pub fn upgrade_to(&self, upstream: OnUpgrade) {
        if let Ok(mut slot) = self.upgrade.lock() {
            *slot = Some(upstream);
        }
    }

    fn take_upgrade(&self) -> Option<OnUpgrade> {
        self.upgrade.lock().ok()?.take()
    }

    /// The limit that is due at `now`, or when to look again. The h2
    /// watchdog's verdict; HTTP/1.1 has its own loop.
    fn due(
        &self,
        limits: &ConnLimits,
        max_age_at: Option<Instant>,
        now: Instant,
    ) -> Result<CloseReason, Instant> {
        if let Some(r) = self.close_requested() {
            return Ok(r);
        }
        let started = self.started.load(Ordering::Acquire);
        // Busy connections are looked at again after an idle period (a
        // second at least, so a zero timeout cannot spin); their idle
        // deadline can only be later than that.
        let mut next = now + limits.idle_timeout.max(Duration::from_secs(1));
        let mut check = |at: Instant, reason: CloseReason| {
            if at <= now {
                Err(reason)
            } else {
                next = next.min(at);
                Ok(())
            }
        };
        let first = if started {
            CloseReason::HeaderTimeout
        } else {
            CloseReason::PrefaceTimeout
        };
        let verdict = (|| {
            if let Some(at) = max_age_at {
                check(at, CloseReason::MaxAge)?;
            }
            if let Some(began) = self.head_began() {
                check(began + limits.header_read_timeout, first)?;
            }
            if !started {
                check(
                    self.base + limits.header_read_timeout,
                    CloseReason::PrefaceTimeout,
                )?;
            } else if self.in_flight() == 0 {
                check(self.quiet_at(limits.idle_timeout), CloseReason::IdleTimeout)?;
            }
            Ok(())
        })();
        match verdict {
            Err(reason) => Ok(reason),
            Ok(()) => Err(next),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            max_header_bytes: 65536,
            max_age: None,
            drain_timeout: Duration::from_secs(30),
            h2_keep_alive: None,
        }
    }

    #[test]
    fn reasons_round_trip_through_their_codes_and_have_distinct_labels() {
        let mut labels = std::collections::HashSet::new();
        for r in CloseReason::ALL {
            assert_eq!(CloseReason::from_code(r.code()), Some(r));
            assert!(labels.insert(r.as_str()));
        }
        assert_eq!(CloseReason::from_code(0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_without_a_first_request_is_due_at_the_header_timeout() {
        let a = Arc::new(Activity::default());
        let l = limits();
        let now = Instant::now();
        assert_eq!(a.due(&l, None, now), Err(now + l.header_read_timeout));
        tokio::time::advance(l.header_read_timeout).await;
        assert_eq!(
            a.due(&l, None, Instant::now()),
            Ok(CloseReason::PrefaceTimeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_response_and_not_while_busy() {
        let a = Arc::new(Activity::default());
        let l = limits();
        let req = a.start();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(a.due(&l, None, Instant::now()).is_err(), "busy: not idle");
        drop(req);
        let done = Instant::now();
        assert_eq!(
            a.due(&l, None, done),
            Err(done + l.idle_timeout),
            "idle from the end of the response"
        );
        tokio::time::advance(l.idle_timeout).await;
        assert_eq!(
            a.due(&l, None, Instant::now()),
            Ok(CloseReason::IdleTimeout)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_head_left_open_is_due_even_while_another_request_is_busy() {
        let a = Arc::new(Activity::default());
        let l = limits();
        let _busy = a.start();
        a.begin_head();
        tokio::time::advance(l.header_read_timeout).await;
        assert_eq!(
            a.due(&l, None, Instant::now()),
            Ok(CloseReason::HeaderTimeout)
        );
        a.end_head();
        assert!(a.due(&l, None, Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn max_age_and_asked_for_closes_win() {
        let a = Arc::new(Activity::default());
        let mut l = limits();
        l.max_age = Some(Duration::from_secs(100));
        let at = l.max_age_at(&a).unwrap();
        let base = a.base;
        assert!(at <= base + Duration::from_secs(100) && at >= base + Duration::from_secs(90));
        let _busy = a.start();
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(a.due(&l, Some(at), Instant::now()), Ok(CloseReason::MaxAge));
        a.close(CloseReason::BodyTimeout);
        a.close(CloseReason::IdleTimeout);
        assert_eq!(
            a.due(&l, Some(at), Instant::now()),
            Ok(CloseReason::BodyTimeout),
            "the first close asked for is kept"
        );
    }
}
