//! The data path: TCP -> ClientHello -> the host's TLS config -> handshake
//! -> HTTP/1.1 or h2 -> misdirection and allow-list checks -> route ->
//! upstream. The snapshot is read once per connection and once per request,
//! so a reload never disturbs an established connection.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::LazyConfigAcceptor;
use tracing::{debug, info, warn};

use super::authenticate::{AuthRuntime, Checked};
use super::authority::{self, HostError};
use super::identity::{self, ClientIdentity};
use super::routes::Backend;
use super::snapshot::{HostEntry, Snapshot};
use super::upstream::{BodyOutcome, PooledBody, RequestBody, Target, Upstream, UpstreamError};
use crate::clientauth::ForwardClientCert;
use crate::conn::CloseReason;
use crate::conn::{Activity, ConnLimits, TrackedBody};
use crate::ingress_nginx::client_auth::{self, ClientAuth, ErrorPage};
use crate::telemetry::HandshakeLabels::{self, Failure};
use crate::telemetry::{HostCodeLabels, ProxyMetrics, UpstreamLabels};
use crate::tls::{ClientVerdict, HandshakeFailure};

mod websocket;

/// Response bodies: streamed from upstream or made here.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Resource limits of the data path.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Each HTTPS connection's HTTP limits (header, idle, age, ...).
    pub conn: ConnLimits,
    /// Connections served at once; more wait in the kernel backlog.
    pub max_connections: usize,
    /// Time allowed to connect to an endpoint (else 502).
    pub upstream_connect_timeout: Duration,
    /// Time allowed for the upstream's response head (else 504).
    pub upstream_response_timeout: Duration,
    /// Whether clients may resume TLS sessions (see `--session-resumption`).
    pub session_resumption: bool,
}

/// State shared by every connection.
pub struct Shared {
    /// The serving state, swapped whole on reload.
    pub snapshot: ArcSwap<Snapshot>,
    /// Metrics.
    pub metrics: ProxyMetrics,
    /// Limits.
    pub limits: Limits,
    /// `--max-connections`, shared by every worker.
    connection_slots: Arc<Semaphore>,
    /// Issuers' key caches and login state.
    pub auth: AuthRuntime,
    /// Ticks on every published snapshot, so that open connections check
    /// their client against it.
    published: watch::Sender<()>,
}

impl Shared {
    /// Creates the shared state with an empty snapshot.
    pub fn new(metrics: ProxyMetrics, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            snapshot: ArcSwap::from_pointee(Snapshot::default()),
            connection_slots: Arc::new(Semaphore::new(limits.max_connections)),
            auth: AuthRuntime::default(),
            published: watch::Sender::new(()),
            metrics,
            limits,
        })
    }

    /// Swaps in `next` and tells open connections to check their client
    /// against it.
    pub fn store(&self, next: Snapshot) {
        self.snapshot.store(Arc::new(next));
        self.published.send_replace(());
    }

    /// A keep-alive pool for upstreams. Each worker makes its own, so a
    /// request, its upstream connection and that connection's task all stay
    /// on one thread.
    fn upstream_pool(&self) -> Arc<Upstream> {
        Upstream::new(self.limits.upstream_connect_timeout)
    }
}

/// What a connection established at handshake time.
struct Connection {
    sni_host: Arc<HostEntry>,
    identity: Option<ClientIdentity>,
    /// What tells the upstream who the client is, built once per connection:
    /// hosts reachable on it share the SNI host's policy, hence its mode.
    identity_headers: Vec<(HeaderName, HeaderValue)>,
    /// Why every request on the connection is refused, if it is.
    refused: Option<Refusal>,
    peer: SocketAddr,
    /// `X-Forwarded-For`: the peer's address, formatted once.
    forwarded_for: HeaderValue,
    /// What this connection's requests report to its driver.
    activity: Arc<Activity>,
    /// The worker's upstream pool.
    upstream: Arc<Upstream>,
    /// nginx's `$ssl_client_*` for the connection, when its host has
    /// ingress-nginx `auth-tls-*` annotations.
    nginx: Option<NginxClient>,
}

/// What nginx's `$ssl_client_*` variables held for a connection.
struct NginxClient {
    /// `$ssl_client_verify`.
    verdict: ClientVerdict,
    /// `$ssl_client_s_dn` (RFC 4514); empty without a certificate.
    subject_dn: String,
    /// The `ssl-client-*` headers for the upstream.
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl NginxClient {
    /// The verdict on the connection's certificates and the headers nginx
    /// sends with it. Under a strict handshake a certificate that is here
    /// has verified; otherwise `strict` decides now.
    fn new(
        ca: &ClientAuth,
        strict: Option<&dyn rustls::server::danger::ClientCertVerifier>,
        certs: &[rustls::pki_types::CertificateDer<'_>],
        id: Option<&ClientIdentity>,
    ) -> Self {
        let verdict = match strict {
            // `off`: no certificate was asked for.
            None => ClientVerdict::None,
            Some(v) if ca.lenient_handshake() => {
                crate::tls::client_verdict(v, certs, rustls::pki_types::UnixTime::now())
            }
            Some(_) if certs.is_empty() => ClientVerdict::None,
            Some(_) => ClientVerdict::Success,
        };
        let mut pairs = vec![("ssl-client-verify", verdict.header_value().to_string())];
        if let Some(id) = id {
            use x509_parser::prelude::{FromDer, X509Certificate};
            pairs.push(("ssl-client-subject-dn", id.subject.clone()));
            if let Ok((_, cert)) = X509Certificate::from_der(&id.der) {
                pairs.push(("ssl-client-issuer-dn", identity::rfc4514(cert.issuer())));
            }
            if ca.pass_certificate {
                pairs.push(("ssl-client-cert", client_auth::escaped_pem(&id.der)));
            }
        }
        // RFC 4514 and URL escaping leave visible ASCII only.
        let headers = pairs
            .into_iter()
            .filter_map(|(n, v)| {
                Some((HeaderName::from_static(n), HeaderValue::from_str(&v).ok()?))
            })
            .collect();
        Self {
            verdict,
            subject_dn: id.map(|i| i.subject.clone()).unwrap_or_default(),
            headers,
        }
    }
}

/// Why a verified client gets a 403 on every request of its connection.
/// Decided once, at the handshake.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// The host's allow-list does not name the client.
    #[error("client certificate {client:?} is not allowed by ClientAuthPolicy {policy} for {host}")]
    NotAllowed {
        /// The certificate's display name.
        client: String,
        /// The policy (`ns/name`).
        policy: String,
        /// The SNI host.
        host: String,
    },
    /// The host forwards the client's identity, and a field of it cannot
    /// be written unambiguously: going on without the header would hand
    /// the upstream an anonymous request.
    #[error("{0}")]
    Uncarriable(#[from] identity::Uncarriable),
    /// The TLS stack verified a certificate the identity reader cannot
    /// read: without an identity the allow-list could not be checked.
    #[error(
        "the client certificate was verified but its subject or subjectAltNames cannot be read"
    )]
    Unreadable,
}

impl Refusal {
    fn reason(&self) -> HandshakeFailure {
        match self {
            Refusal::NotAllowed { .. } => HandshakeFailure::NotAllowed,
            Refusal::Uncarriable(_) | Refusal::Unreadable => HandshakeFailure::BadCertificate,
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn handshake(metrics: &ProxyMetrics, outcome: HandshakeLabels) {
    metrics.handshakes.get_or_create(&outcome).inc();
}

/// The identity headers `forward` asks for (none without a client
/// certificate). Client-sent copies are always removed separately.
fn identity_headers(
    forward: ForwardClientCert,
    id: Option<&ClientIdentity>,
) -> Result<Vec<(HeaderName, HeaderValue)>, identity::Uncarriable> {
    let Some(id) = id else {
        return Ok(Vec::new());
    };
    let b64 = |der: &[u8]| {
        format!(
            ":{}:",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let pairs: Vec<(&'static str, String)> = match forward {
        ForwardClientCert::Sanitize => vec![("x-forwarded-client-cert", id.xfcc()?)],
        ForwardClientCert::Rfc9440 => {
            let mut v = vec![("client-cert", b64(&id.der))];
            if !id.chain.is_empty() {
                let chain: Vec<String> = id.chain.iter().map(|c| b64(c)).collect();
                v.push(("client-cert-chain", chain.join(", ")));
            }
            v
        }
        ForwardClientCert::None => Vec::new(),
    };
    // Every value is visible ASCII by construction (hex, base64, escaped
    // subject, checked SANs), so none is lost here.
    Ok(pairs
        .into_iter()
        .filter_map(|(n, v)| Some((HeaderName::from_static(n), HeaderValue::from_str(&v).ok()?)))
        .collect())
}

/// Serves HTTPS on `listener` until `shutdown` flips; the connections it
/// accepted then drain on the calling runtime.
pub async fn serve_https(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let permits = shared.connection_slots.clone();
    let upstream = shared.upstream_pool();
    loop {
        // Accept, then wait for a slot: a worker that took a slot first
        // could sit in accept while the waiting connection is queued on
        // another worker's listener. So each worker holds at most one
        // connection beyond the limit; the rest wait in the kernel backlog.
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { warn!(error = %e, "accept failed"); continue; }
            },
            _ = shutdown.changed() => return,
        };
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.changed() => return,
        };
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            shared.metrics.active_connections.inc();
            serve_connection(tcp, peer, &shared, upstream, shutdown).await;
            shared.metrics.active_connections.dec();
            drop(permit);
        });
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    upstream: Arc<Upstream>,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let limits = &shared.limits;
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    // The handshake futures are boxed (as is the h2 session below) so that
    // the connection's task, which lives as long as the connection, is not
    // sized for them: an idle connection then holds only its TLS state.
    let start = match Box::pin(tokio::time::timeout(limits.handshake_timeout, acceptor)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "no ClientHello");
            handshake(&shared.metrics, Failure(HandshakeFailure::ProtocolError));
            return;
        }
        Err(_) => {
            handshake(&shared.metrics, Failure(HandshakeFailure::Timeout));
            return;
        }
    };
    let sni = start.client_hello().server_name().map(str::to_string);
    let snapshot = shared.snapshot.load_full();
    let Some(host) = sni.as_deref().and_then(|s| snapshot.lookup(s)).cloned() else {
        debug!(%peer, sni = ?sni, "unknown SNI: refused");
        handshake(&shared.metrics, Failure(HandshakeFailure::UnknownSni));
        return;
    };
    let tls = match Box::pin(tokio::time::timeout(
        limits.handshake_timeout,
        start.into_stream(host.tls.clone()),
    ))
    .await
    {
        // Boxed: the stream then moves as a pointer, not as its TLS
        // state, which would otherwise be copied into every future that
        // takes it.
        Ok(Ok(t)) => Box::new(t),
        Ok(Err(e)) => {
            let reason = HandshakeFailure::of(&e);
            info!(%peer, host = %host.host, reason = reason.as_str(), error = %e, "TLS handshake refused");
            handshake(&shared.metrics, Failure(reason));
            return;
        }
        Err(_) => {
            handshake(&shared.metrics, Failure(HandshakeFailure::Timeout));
            return;
        }
    };
    let certs = tls.get_ref().1.peer_certificates().unwrap_or_default();
    let identity = certs.first().and_then(|leaf| {
        let mut id = ClientIdentity::from_der(leaf.as_ref())?;
        id.chain = certs[1..].iter().map(|c| c.as_ref().to_vec()).collect();
        Some(id)
    });
    let mut refused = match (&host.allowed, &identity) {
        _ if !certs.is_empty() && identity.is_none() => Some(Refusal::Unreadable),
        (Some(list), Some(id)) if !identity::allowed(list, id) => Some(Refusal::NotAllowed {
            client: id.display_name(),
            policy: host.policy.clone().unwrap_or_default(),
            host: host.host.clone(),
        }),
        _ => None,
    };
    let identity_headers = identity_headers(host.forward, identity.as_ref()).unwrap_or_else(|e| {
        refused.get_or_insert(Refusal::Uncarriable(e));
        Vec::new()
    });
    let nginx = host
        .nginx
        .as_ref()
        .map(|ca| NginxClient::new(ca, host.verifier.as_deref(), certs, identity.as_ref()));
    let unverified = nginx.as_ref().and_then(|n| match n.verdict {
        ClientVerdict::Failed(why) => Some(why),
        _ => None,
    });
    match (&refused, unverified) {
        (Some(why), _) => {
            info!(%peer, host = %host.host, reason = why.reason().as_str(), error = %why, "client refused");
            handshake(&shared.metrics, Failure(why.reason()));
        }
        // Counted as a failure although the connection stays open: the
        // auth-tls annotations decide per request what becomes of it.
        (None, Some(why)) => {
            info!(%peer, host = %host.host, reason = why.as_str(), "client certificate failed verification; handled per nginx.ingress.kubernetes.io/auth-tls-verify-client and auth-tls-error-page");
            handshake(&shared.metrics, Failure(why));
        }
        (None, None) => handshake(&shared.metrics, HandshakeLabels::Success),
    }
    // A certificate that did not verify names no one: not in the access
    // log, not to a later check. Its headers were taken above.
    let identity = identity.filter(|_| unverified.is_none());
    // Subscribed before the connection serves, so no snapshot published
    // from here on goes unchecked.
    let recheck = host
        .verifier
        .is_some()
        .then(|| (shared.published.subscribe(), sni.unwrap_or_default()));
    let conn = Arc::new(Connection {
        identity_headers,
        sni_host: host,
        identity,
        refused,
        forwarded_for: HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        peer,
        activity: Arc::default(),
        upstream,
        nginx,
    });
    // ALPN settled the protocol in the handshake (h2 over TLS requires it,
    // RFC 9113 3.2), so serve it directly: no preface sniffing, and the
    // connection task is sized for one protocol rather than the larger of
    // the two.
    let activity = conn.activity.clone();
    let watch_client = recheck.map(|(published, sni)| {
        Box::pin(client_no_longer_accepted(
            conn.clone(),
            sni,
            shared.clone(),
            published,
        ))
    });
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let svc_shared = shared.clone();
    // Boxed: hyper spawns a task per h2 stream and moves the service's
    // future into it; a pointer is cheaper to move than the whole request
    // future, whose copies showed in h2 profiles as memmove. HTTP/1.1
    // needs the future Unpin.
    let service = move |req| {
        let in_flight = conn.activity.start();
        let (conn, shared) = (conn.clone(), svc_shared.clone());
        Box::pin(async move {
            let resp = handle(req, &conn, &shared).await;
            Ok::<_, Infallible>(resp.map(|b| TrackedBody::new(b, in_flight)))
        })
    };
    let closer = activity.clone();
    let serving = async move {
        if h2 {
            // Boxed, so that the idle HTTP/1.1 connection's task (the
            // common case, and what the memory figures measure) is not
            // sized for h2's.
            Box::pin(crate::conn::h2::serve_with_websockets(
                tls,
                &limits.conn,
                activity,
                service,
                shutdown,
            ))
            .await
        } else {
            crate::conn::http1::serve(tls, &limits.conn, activity, service, shutdown).await
        }
    };
    let closed = match watch_client {
        None => serving.await,
        Some(watch) => {
            let mut serving = std::pin::pin!(serving);
            tokio::select! {
                closed = &mut serving => closed,
                reason = watch => {
                    // HTTP/1.1 finishes its response, h2 sends GOAWAY, a
                    // tunnel ends; then the drain timeout bounds it.
                    closer.close(reason);
                    serving.await
                }
            }
        }
    };
    if let Some(reason) = closed {
        debug!(%peer, reason = reason.as_str(), "connection closed by a limit");
        shared.metrics.connection_closed(reason);
    }
}

/// Resolves when a published snapshot no longer accepts the connection's
/// client: its certificate revoked or no longer trusted, or the host's
/// allow-list no longer naming it. Never resolves otherwise.
async fn client_no_longer_accepted(
    conn: Arc<Connection>,
    sni: String,
    shared: Arc<Shared>,
    mut published: watch::Receiver<()>,
) -> CloseReason {
    loop {
        if published.changed().await.is_err() {
            return std::future::pending().await;
        }
        let snapshot = shared.snapshot.load();
        let now = rustls::pki_types::UnixTime::now();
        if let Err(reason) = still_accepted(&conn, snapshot.lookup(&sni), now) {
            info!(
                peer = %conn.peer,
                host = %conn.sni_host.host,
                client = %conn.identity.as_ref().map(ClientIdentity::display_name).unwrap_or_else(|| "-".into()),
                reason = reason.as_str(),
                "open connection closed: its client is no longer accepted"
            );
            return reason;
        }
    }
}

/// Whether the host's new entry still accepts the connection's client, as
/// its handshake and allow-list would now. No I/O.
fn still_accepted(
    conn: &Connection,
    entry: Option<&Arc<HostEntry>>,
    now: rustls::pki_types::UnixTime,
) -> Result<(), CloseReason> {
    // A host no longer served answers 421 to every request anyway.
    let Some(entry) = entry else { return Ok(()) };
    if Arc::ptr_eq(entry, &conn.sni_host) {
        return Ok(());
    }
    if entry.nginx.is_some() {
        // Only a certificate that verified can stop verifying; the rest
        // is decided per request against the new entry.
        let was_verified = conn
            .nginx
            .as_ref()
            .is_some_and(|n| n.verdict == ClientVerdict::Success);
        return match (&entry.verifier, &conn.identity) {
            (Some(verifier), Some(id)) if was_verified => {
                still_verifies(verifier.as_ref(), id, now)
            }
            _ => Ok(()),
        };
    }
    if let Some(verifier) = &entry.verifier {
        match &conn.identity {
            None if verifier.client_auth_mandatory() => return Err(CloseReason::ClientUntrusted),
            None => {}
            Some(id) => still_verifies(verifier.as_ref(), id, now)?,
        }
    }
    match (&entry.allowed, &conn.identity) {
        (Some(list), Some(id)) if !identity::allowed(list, id) => {
            Err(CloseReason::ClientNotAllowed)
        }
        _ => Ok(()),
    }
}

/// Whether `verifier` still accepts the connection's certificate.
fn still_verifies(
    verifier: &dyn rustls::server::danger::ClientCertVerifier,
    id: &ClientIdentity,
    now: rustls::pki_types::UnixTime,
) -> Result<(), CloseReason> {
    let leaf = rustls::pki_types::CertificateDer::from(id.der.as_slice());
    let chain: Vec<_> = id
        .chain
        .iter()
        .map(|c| rustls::pki_types::CertificateDer::from(c.as_slice()))
        .collect();
    match verifier.verify_client_cert(&leaf, &chain, now) {
        Ok(_) => Ok(()),
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Revoked)) => {
            Err(CloseReason::ClientRevoked)
        }
        Err(_) => Err(CloseReason::ClientUntrusted),
    }
}

/// The host a request is for: `:authority` (h2) or `Host`, checked and
/// normalised (see [`authority`](super::authority)).
pub(crate) fn request_host<B>(req: &Request<B>) -> Result<String, HostError> {
    authority::request_host(
        req.uri().authority().map(|a| a.as_str()),
        req.headers().get(header::HOST).map(HeaderValue::as_bytes),
    )
    .map(std::borrow::Cow::into_owned)
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1), with the legacy ones
/// proxies also drop.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name == header::PROXY_AUTHENTICATE
        || name == header::PROXY_AUTHORIZATION
        || matches!(name.as_str(), "keep-alive" | "proxy-connection")
}

/// Headers only the edge may set: who the client is and where it came
/// from. A client's copies are removed on every host, mTLS or not, so an
/// upstream that trusts one of these names (as apps behind ingress-nginx,
/// Envoy or Traefik do) never reads a value the client chose. The list is
/// in docs/proxy.md.
fn is_edge_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    matches!(
        n,
        "x-forwarded-client-cert"
            | "client-cert"
            | "client-cert-chain"
            | "forwarded"
            | "x-real-ip"
            | "x-forwarded-port"
            | "x-original-forwarded-for"
            | "x-client-verify"
            | "x-client-dn"
            | "x-client-cert"
    ) || n.starts_with("ssl-client")
        || n.starts_with("x-ssl-client")
        || n.starts_with("x-forwarded-tls-client-cert")
}

const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Removes the headers `doomed` picks. Most messages carry none of them
/// (or only `Connection`), so this scans the names rather than hashing a
/// list of candidates, and allocates nothing.
fn remove_headers(h: &mut HeaderMap, doomed: impl Fn(&HeaderName) -> bool) {
    while let Some(n) = h.keys().find(|n| doomed(n)).cloned() {
        h.remove(n);
    }
}

/// The protocol to ask the upstream for: `Connection: upgrade` with an
/// `Upgrade` naming `websocket` or a protocol the host's Ingress opts into
/// (`tlsward.io/upgrades`; HTTP/1.1 only). Other protocols (`h2c`, anything
/// unknown) are not tunnelled: after a 101 the client's bytes would reach
/// the upstream raw, past the Host, identity and forwarding headers set
/// here. Their `Upgrade` is dropped as hop-by-hop, so the request goes on
/// as an ordinary one.
fn wants_upgrade(h: &HeaderMap, opted_in: &[String]) -> Option<HeaderValue> {
    let tokens = |name| {
        h.get_all(name)
            .iter()
            .filter_map(|v: &HeaderValue| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    if !tokens(header::CONNECTION).any(|t| t.eq_ignore_ascii_case("upgrade")) {
        return None;
    }
    // The first protocol offered that the host tunnels (RFC 9110 section
    // 7.8: the client lists them in its order of preference).
    tokens(header::UPGRADE).find_map(|t| {
        if t.eq_ignore_ascii_case("websocket") {
            Some(HeaderValue::from_static("websocket"))
        } else {
            opted_in
                .iter()
                .find(|p| p.eq_ignore_ascii_case(t))
                .and_then(|p| HeaderValue::from_str(p).ok())
        }
    })
}

fn strip_hop_by_hop(h: &mut HeaderMap) {
    // Names listed in `Connection` go too. The usual `keep-alive` or
    // `close` is hop-by-hop anyway, so it needs no header name made for it.
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|n| !n.eq_ignore_ascii_case("close") && !n.eq_ignore_ascii_case("keep-alive"))
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    remove_headers(h, is_hop_by_hop);
}

async fn handle(req: Request<Incoming>, conn: &Connection, shared: &Shared) -> Response<ProxyBody> {
    let started = Instant::now();
    // Kept only for the access log, so a disabled log costs no copies.
    let logged = tracing::enabled!(target: "tlsward::access", tracing::Level::INFO)
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let host = request_host(&req);
    let snapshot = shared.snapshot.load();
    let entry = host.as_deref().ok().and_then(|h| snapshot.lookup(h));
    // The awaits are here, not in nested async fns: each async layer that
    // takes the request by value keeps its own copy of it in the future,
    // and hyper moves that future around.
    let mut set_cookies = Vec::new();
    let admitted = match admit(host.as_deref().map_err(|e| *e), entry, conn) {
        Admission::Refused(resp) => Routed::Answer(resp),
        Admission::Admitted(host, target) => match &target.auth {
            None => route(req, host, target, conn),
            Some(auth) => {
                let cert = conn.identity.as_ref().map(|i| &i.cert_digest);
                match super::authenticate::check(
                    req,
                    auth,
                    target,
                    host,
                    conn.identity.as_ref(),
                    cert,
                    &shared.auth,
                    &shared.metrics,
                )
                .await
                {
                    Checked::Answer(resp) => Routed::Answer(resp),
                    Checked::Pass(req, passed) => {
                        set_cookies = passed.set_cookies;
                        route(req, host, target, conn)
                    }
                }
            }
        },
    };
    let (mut resp, upstream) = match admitted {
        Routed::Answer(resp) => (resp, None),
        Routed::Forward {
            req,
            addr,
            backend,
            upgrade,
            grpc,
            websocket,
        } => {
            let via = &*backend.via;
            let outcome = (via.body_size.is_some() || via.send_timeout.is_some())
                .then(|| Arc::new(BodyOutcome::default()));
            let req = req.map(|b| match &outcome {
                None => RequestBody::new(b),
                Some(o) => RequestBody::limited(b, via.body_size, via.send_timeout, o.clone()),
            });
            let sent = tokio::time::timeout(
                via.read_timeout
                    .unwrap_or(shared.limits.upstream_response_timeout),
                conn.upstream.send_to(Target { addr, via }, req),
            )
            .await;
            let answer = Forwarded {
                addr,
                backend,
                upgrade,
                grpc,
                outcome: outcome.as_deref(),
            };
            let resp = match websocket {
                Some(ws) => ws.answer(sent, &answer, conn, shared),
                None => upstream_answer(sent, &answer, conn, shared),
            };
            (resp, Some(addr))
        }
    };
    for c in set_cookies {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    if let Some(hsts) = entry.and_then(|e| e.hsts.as_ref()) {
        resp.headers_mut()
            .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
    }
    let status = resp.status().as_u16();
    let host_label = host.as_deref().unwrap_or_default();
    let requests = &shared.metrics.requests;
    match entry {
        Some(entry) if status == 200 => entry
            .ok_requests
            .get_or_init(|| {
                requests
                    .get_or_create(&HostCodeLabels {
                        host: entry.host.clone(),
                        code: status,
                    })
                    .clone()
            })
            .inc(),
        entry => requests
            .get_or_create(&HostCodeLabels {
                host: entry.map_or_else(|| "unknown".to_string(), |h| h.host.clone()),
                code: status,
            })
            .inc(),
    };
    let elapsed = started.elapsed();
    shared
        .metrics
        .request_duration
        .observe(elapsed.as_secs_f64());
    let Some((method, path)) = logged else {
        return resp;
    };
    info!(
        target: "tlsward::access",
        host = %host_label,
        method = %method,
        path = %path,
        status,
        duration_us = elapsed.as_micros() as u64,
        client = %conn.identity.as_ref().map(ClientIdentity::display_name).unwrap_or_else(|| "-".into()),
        peer = %conn.peer,
        upstream = %upstream.map(|a| a.to_string()).unwrap_or_default(),
        "request"
    );
    resp
}

/// What becomes of a request: the proxy answers it, or it goes upstream.
enum Routed<'s> {
    Answer(Response<ProxyBody>),
    Forward {
        /// Rewritten for the upstream: origin-form, proxy headers set.
        req: Request<Incoming>,
        addr: SocketAddr,
        /// The route's backend: its name and how to reach it.
        backend: &'s Backend,
        /// An HTTP/1.1 upgrade (websocket) was asked for.
        upgrade: bool,
        /// A gRPC call: proxy-side errors are answered with a gRPC status.
        grpc: bool,
        /// An h2 extended CONNECT for a WebSocket, sent on as an upgrade.
        websocket: Option<Box<websocket::H2WebSocket>>,
    },
}

/// Whether a request may go on to authentication and routing.
enum Admission<'s, 'h> {
    /// The host name and its entry.
    Admitted(&'h str, &'s Arc<HostEntry>),
    /// The answer that ends the request.
    Refused(Response<ProxyBody>),
}

/// Checks the host `entry` the request's Host header names against the
/// connection: the host, and the verdict of its allow-list. No I/O.
fn admit<'s, 'h>(
    host: Result<&'h str, HostError>,
    entry: Option<&'s Arc<HostEntry>>,
    conn: &Connection,
) -> Admission<'s, 'h> {
    let host = match host {
        Ok(h) => h,
        Err(e) => return Admission::Refused(text(StatusCode::BAD_REQUEST, format!("{e}\n"))),
    };
    let target = match entry {
        // Connection coalescing must not let a client reach a host under
        // another policy than the one its handshake was checked against.
        Some(t) if Arc::ptr_eq(t, &conn.sni_host) || t.policy == conn.sni_host.policy => t,
        _ => {
            return Admission::Refused(text(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this connection was opened for {}; open a new connection for {host}\n",
                    conn.sni_host.host
                ),
            ));
        }
    };
    if let Some(why) = &conn.refused {
        return Admission::Refused(text(StatusCode::FORBIDDEN, format!("{why}\n")));
    }
    Admission::Admitted(host, target)
}

/// Picks the upstream endpoint for an admitted (and authenticated)
/// request and rewrites it for the upstream; no I/O.
fn route<'s>(
    mut req: Request<Incoming>,
    host: &str,
    target: &'s Arc<HostEntry>,
    conn: &Connection,
) -> Routed<'s> {
    if let Some(resp) = nginx_refusal(req.uri().path(), target, conn) {
        return Routed::Answer(resp);
    }
    let websocket = match websocket::H2WebSocket::from_connect(&mut req) {
        Ok(ws) => ws,
        Err(refused) => return Routed::Answer(*refused),
    };
    let Some(backend) = target.routes.lookup(req.uri().path()) else {
        return Routed::Answer(text(
            StatusCode::NOT_FOUND,
            format!("no route for {} on {host}\n", req.uri().path()),
        ));
    };
    let grpc = is_grpc(req.headers());
    let Some(addr) = backend.pick() else {
        let why = format!("no ready endpoints for {}", backend.name);
        return Routed::Answer(if grpc {
            grpc_status(GrpcCode::Unavailable, &why)
        } else {
            text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
        });
    };
    let via = &*backend.via;
    // A body that says up front it is too large is refused before a byte
    // of it is read; one that does not is cut off as it outgrows the limit.
    if let Some(limit) = via.body_size
        && let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        && len > limit
    {
        return Routed::Answer(too_large_answer(limit, grpc));
    }

    // Origin-form, as a client sends it to an origin server; `Host` is set
    // below. An h2 request's URI also carries the scheme and authority.
    let origin_form = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| hyper::http::uri::PathAndQuery::from_static("/"));
    let uri = hyper::Uri::from(origin_form);
    let h2 = via.protocol.h2();
    if h2 {
        // h2 carries the target as :scheme, :authority and :path.
        let scheme = if via.protocol.tls() { "https" } else { "http" };
        match hyper::Uri::try_from(format!("{scheme}://{host}{uri}")) {
            Ok(absolute) => *req.uri_mut() = absolute,
            Err(_) => *req.uri_mut() = uri,
        }
        *req.version_mut() = hyper::Version::HTTP_2;
    } else {
        *req.uri_mut() = uri;
        *req.version_mut() = hyper::Version::HTTP_11;
    }
    // An HTTP/1.1 upgrade (websocket) keeps its Upgrade header end to end.
    if websocket.is_some() && h2 {
        return Routed::Answer(text(
            StatusCode::NOT_IMPLEMENTED,
            format!(
                "WebSockets to the h2 backend {} are not supported\n",
                backend.name
            ),
        ));
    }
    let protocol = if websocket.is_some() {
        Some(HeaderValue::from_static("websocket"))
    } else {
        wants_upgrade(req.headers(), &target.upgrades)
    };
    let upgrade = !h2 && protocol.is_some();
    let te_trailers = req
        .headers()
        .get_all(header::TE)
        .iter()
        .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let headers = req.headers_mut();
    strip_hop_by_hop(headers);
    // gRPC servers expect it (RFC 9113 allows exactly this value).
    if h2 && (te_trailers || grpc) {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(protocol) = protocol.filter(|_| upgrade) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    remove_headers(headers, is_edge_header);
    if let Ok(v) = HeaderValue::from_str(host) {
        if h2 {
            headers.remove(header::HOST);
        } else {
            headers.insert(header::HOST, v.clone());
        }
        headers.insert(X_FORWARDED_HOST, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    // The proxy is the edge: what a client claims in X-Forwarded-For is
    // not evidence, so the header carries the real peer address only.
    headers.insert(X_FORWARDED_FOR, conn.forwarded_for.clone());
    for (name, value) in &conn.identity_headers {
        headers.insert(name.clone(), value.clone());
    }
    for (name, value) in conn.nginx.iter().flat_map(|n| &n.headers) {
        headers.insert(name.clone(), value.clone());
    }
    Routed::Forward {
        req,
        addr,
        backend,
        upgrade,
        grpc,
        websocket,
    }
}

/// What the `auth-tls-*` annotations answer instead of the upstream: the
/// error page (302, as nginx's `error_page` with a URL) or 400 for a
/// certificate that is missing or failed, 403 when `auth-tls-match-cn`
/// does not match the subject DN (nginx's `return 403`).
fn nginx_refusal(path: &str, target: &HostEntry, conn: &Connection) -> Option<Response<ProxyBody>> {
    let ca = target.nginx.as_ref()?;
    // nginx serves its error page by an internal redirect, past the checks.
    if let Some(ErrorPage::Path(page)) = &ca.error_page
        && page.split('?').next() == Some(path)
    {
        return None;
    }
    let (verified, dn) = conn.nginx.as_ref().map_or((None, ""), |n| {
        (n.verdict.verified(), n.subject_dn.as_str())
    });
    if ca.fails(verified) {
        let location = ca
            .error_page
            .as_ref()
            .and_then(|p| HeaderValue::from_str(p.location()).ok());
        return Some(match location {
            Some(location) => {
                let mut r = text(StatusCode::FOUND, String::new());
                r.headers_mut().insert(header::LOCATION, location);
                r
            }
            None => text(
                StatusCode::BAD_REQUEST,
                "a valid client certificate is required\n".into(),
            ),
        });
    }
    if !ca.cn_matches(dn) {
        return Some(text(
            StatusCode::FORBIDDEN,
            "client certificate unauthorized\n".into(),
        ));
    }
    None
}

/// A request whose content type is gRPC's (`application/grpc`, with or
/// without a `+proto`-style suffix or parameters).
fn is_grpc(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case("application/grpc"))
                && matches!(v.as_bytes().get(16), None | Some(b'+' | b';'))
        })
}

/// The gRPC status codes the proxy answers with.
#[derive(Clone, Copy)]
enum GrpcCode {
    DeadlineExceeded = 4,
    ResourceExhausted = 8,
    Unavailable = 14,
}

/// A trailers-only gRPC answer (HTTP 200, the status in the head, no
/// body): what a gRPC client reads as a failed call, where an HTML 502
/// would be a protocol error.
fn grpc_status(code: GrpcCode, message: &str) -> Response<ProxyBody> {
    let mut r = text(StatusCode::OK, String::new());
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code as u16));
    // grpc-message is percent-encoded; keep it to safe characters.
    let safe: String = message
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .map(|c| if c == '%' { '?' } else { c })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&safe) {
        h.insert("grpc-message", v);
    }
    r
}

/// 413 for a body over `proxy-body-size` (gRPC: RESOURCE_EXHAUSTED).
fn too_large_answer(limit: u64, grpc: bool) -> Response<ProxyBody> {
    let why = format!("request body larger than {limit} bytes (proxy-body-size)");
    if grpc {
        grpc_status(GrpcCode::ResourceExhausted, &why)
    } else {
        text(StatusCode::PAYLOAD_TOO_LARGE, format!("{why}\n"))
    }
}

/// A forwarded request, for its answer.
struct Forwarded<'a> {
    addr: SocketAddr,
    backend: &'a Backend,
    upgrade: bool,
    grpc: bool,
    /// What became of a limited request body.
    outcome: Option<&'a BodyOutcome>,
}

/// The client's answer to an upstream exchange: the upstream's response,
/// 502 when the exchange failed, 504 when it timed out, 413 when the body
/// outgrew its limit; for a gRPC call, the matching gRPC status instead.
fn upstream_answer(
    sent: Result<Result<Response<PooledBody>, UpstreamError>, tokio::time::error::Elapsed>,
    f: &Forwarded<'_>,
    conn: &Connection,
    shared: &Shared,
) -> Response<ProxyBody> {
    let (addr, backend) = (f.addr, &f.backend.name);
    let via = &*f.backend.via;
    let result = match &sent {
        Ok(Ok(_)) => "ok",
        Ok(Err(_)) => "error",
        Err(_) => "timeout",
    };
    shared
        .metrics
        .upstream_requests
        .get_or_create(&UpstreamLabels {
            protocol: via.protocol.as_str(),
            result,
        })
        .inc();
    let too_large = f
        .outcome
        .is_some_and(|o| o.too_large.load(std::sync::atomic::Ordering::Relaxed));
    let stalled = f
        .outcome
        .is_some_and(|o| o.stalled.load(std::sync::atomic::Ordering::Relaxed));
    match sent {
        Ok(Ok(mut resp)) => {
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                if !f.upgrade {
                    // A switch the proxy did not ask for cannot be honoured.
                    warn!(upstream = %addr, "upstream switched protocols unasked");
                    return text(
                        StatusCode::BAD_GATEWAY,
                        format!("upstream {backend} switched protocols unasked\n"),
                    );
                }
                // The connection's driver tunnels once hyper has sent the
                // 101 and handed the client's stream back.
                conn.activity.upgrade_to(hyper::upgrade::on(&mut resp));
                return resp.map(|b| b.boxed());
            }
            strip_hop_by_hop(resp.headers_mut());
            // The client's protocol is ours to speak, not the upstream's.
            *resp.version_mut() = hyper::Version::HTTP_11;
            resp.map(|b| b.boxed())
        }
        Ok(Err(_)) if too_large => too_large_answer(via.body_size.unwrap_or_default(), f.grpc),
        Ok(Err(e)) if stalled => {
            info!(ingress = %via.ingress, backend = %backend, upstream = %addr, error = %e, "request body stalled (proxy-send-timeout)");
            timed_out(backend, f.grpc)
        }
        Ok(Err(e)) => {
            warn!(ingress = %via.ingress, backend = %backend, upstream = %addr, protocol = via.protocol.as_str(), error = %e, "upstream failed");
            if f.grpc {
                grpc_status(GrpcCode::Unavailable, &format!("upstream {backend} failed"))
            } else {
                text(
                    StatusCode::BAD_GATEWAY,
                    format!("upstream {backend} failed\n"),
                )
            }
        }
        Err(_) => timed_out(backend, f.grpc),
    }
}

/// 504 (gRPC: DEADLINE_EXCEEDED).
fn timed_out(backend: &str, grpc: bool) -> Response<ProxyBody> {
    let why = format!("upstream {backend} did not answer in time");
    if grpc {
        grpc_status(GrpcCode::DeadlineExceeded, &why)
    } else {
        text(StatusCode::GATEWAY_TIMEOUT, format!("{why}\n"))
    }
}

/// Serves the plain-HTTP port: a request for a host the proxy serves is
/// redirected to HTTPS (308, so methods and bodies are kept). Other hosts
/// get 404 and invalid ones 400, so the port never writes a `Location`
/// that points anywhere but a served host.
pub async fn serve_redirect(
    listener: TcpListener,
    https_port: u16,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
            _ = shutdown.changed() => return,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = redirect(&req, &shared.snapshot.load(), https_port);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// The plain-HTTP port's answer to `req`.
fn redirect<B>(req: &Request<B>, snapshot: &Snapshot, https_port: u16) -> Response<ProxyBody> {
    let host = match request_host(req) {
        Ok(h) => h,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    if snapshot.lookup(&host).is_none() {
        return text(
            StatusCode::NOT_FOUND,
            format!("no HTTPS host named {host} is served here\n"),
        );
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
    match HeaderValue::from_str(&format!("https://{host}{port}{pq}")) {
        Ok(location) => {
            let mut r = text(StatusCode::PERMANENT_REDIRECT, String::new());
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "invalid request target\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn names(h: &HeaderMap) -> Vec<&str> {
        let mut n: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        n.sort_unstable();
        n
    }

    #[test]
    fn grpc_calls_are_told_by_their_content_type_and_answered_in_grpc() {
        for (ct, grpc) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC;charset=utf-8", true),
            ("application/grpc-web", false),
            ("application/json", false),
            ("application/grp", false),
        ] {
            assert_eq!(is_grpc(&headers(&[("content-type", ct)])), grpc, "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
        let r = grpc_status(GrpcCode::Unavailable, "upstream ns/svc:80 failed\n100%");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(r.headers()["content-type"], "application/grpc");
        // Only characters that need no percent-encoding are sent.
        assert_eq!(
            r.headers()["grpc-message"],
            "upstream ns/svc:80 failed?100?"
        );
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_do_not_cross_the_proxy() {
        let mut h = headers(&[
            ("connection", "close, X-Session"),
            ("connection", "x-trace"),
            ("x-session", "1"),
            ("x-trace", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic Zm9vOmJhcg=="),
            ("proxy-authenticate", "Basic"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
            ("authorization", "Bearer t"),
            ("cookie", "a=b"),
        ]);
        strip_hop_by_hop(&mut h);
        assert_eq!(names(&h), ["accept", "authorization", "cookie"]);

        let mut plain = headers(&[("accept", "*/*"), ("user-agent", "curl")]);
        strip_hop_by_hop(&mut plain);
        assert_eq!(names(&plain), ["accept", "user-agent"]);
    }

    #[test]
    fn client_sent_identity_and_origin_headers_are_removed_whatever_their_case() {
        let mut h = HeaderMap::new();
        for n in [
            "X-Forwarded-Client-Cert",
            "Client-Cert",
            "client-cert-chain",
            "Forwarded",
            "X-Real-IP",
            "X-Forwarded-Port",
            "ssl-client-cert",
            "ssl-client-verify",
            "ssl-client-subject-dn",
            "X-SSL-Client-Verify",
            "x-ssl-client-s-dn",
            "X-Forwarded-Tls-Client-Cert-Info",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("forged"),
            );
        }
        h.append("x-client-cert-note", HeaderValue::from_static("kept"));
        remove_headers(&mut h, is_edge_header);
        assert_eq!(names(&h), ["x-client-cert-note"]);
    }

    /// Authorities made of host-ish pieces (capitals, dots, ports, IPv6
    /// literals, userinfo, percent signs, spaces, non-ASCII): a host the
    /// proxy routes by is normal and can travel on (header value, URL
    /// authority), and the same authority gives the same answer as the
    /// request target (`:authority`, absolute form) and as a Host header.
    /// The `request_host` fuzz target checks the same.
    #[test]
    fn request_host_is_normal_and_the_same_from_authority_and_host() {
        use proptest::prelude::*;

        let authority = prop::collection::vec(
            prop_oneof![
                6 => prop::sample::select(vec![
                    "a", "B", "example", "COM", ".", ":", "8443", "0", "[", "]", "::1", "-",
                ]),
                1 => prop::sample::select(vec!["@", "%41", " ", "é", "_", "*", "/", "\t"]),
            ],
            1..8,
        )
        .prop_map(|parts| parts.concat());
        crate::testing::check_property(
            "request_host_is_normal_and_the_same_from_authority_and_host",
            2000,
            authority,
            |text| {
                let by_header = HeaderValue::from_str(&text).ok().map(|v| {
                    let mut req = Request::new(());
                    req.headers_mut().insert(header::HOST, v);
                    request_host(&req)
                });
                let by_target = format!("https://{text}/")
                    .parse::<hyper::Uri>()
                    .ok()
                    .map(|uri| {
                        let mut req = Request::new(());
                        *req.uri_mut() = uri;
                        request_host(&req)
                    });
                for host in [&by_header, &by_target].into_iter().flatten().flatten() {
                    crate::fuzzing::check_routed_host(host).map_err(TestCaseError::fail)?;
                }
                if let (Some(h), Some(t)) = (&by_header, &by_target)
                    && !text.contains(['/', '?', '#'])
                {
                    prop_assert_eq!(h, t, "Host {:?} and :authority {:?} disagree", text, text);
                }
                Ok(())
            },
        );
    }
}
