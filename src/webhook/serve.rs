//! The webhook's HTTPS listener: rustls, then HTTP/1.1 or h2 as ALPN chose,
//! each connection under the proxy's limits ([`crate::conn`]: header read,
//! idle, maximum age, h2 preface and keep-alive). The body-read timeout is
//! per review, in [`super::answer`], which asks the connection to close.
//!
//! hyper serves the connections directly (not axum-server), because
//! axum-server exposes no idle or h2 header limits and has no way for a
//! request to close its connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::App;
use crate::conn::{Activity, ConnLimits, TrackedBody};

/// How connections are served.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
    /// Each connection's HTTP limits.
    pub conn: ConnLimits,
}

/// The connection a request came on, in the request's extensions, so that
/// a handler can ask for it to be closed.
#[derive(Clone)]
pub struct ConnHandle(pub Arc<Activity>);

/// Connections being served; decremented when dropped.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(active: &Arc<AtomicUsize>) -> Self {
        active.fetch_add(1, Ordering::AcqRel);
        Self(active.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts connections until `shutdown` flips; each one is served on its
/// own task, counted in `active` while it lasts, and drains on `shutdown`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Arc<App>,
    settings: Arc<Settings>,
    mut shutdown: watch::Receiver<bool>,
    active: Arc<AtomicUsize>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let router = super::admission_router(app.clone());
    loop {
        let tcp = tokio::select! {
            a = listener.accept() => match a {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of file descriptors, say: do not spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let counted = Counted::new(&active);
        let (acceptor, router, app, settings, shutdown) = (
            acceptor.clone(),
            router.clone(),
            app.clone(),
            settings.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            connection(tcp, acceptor, router, &app, &settings, shutdown).await;
            drop(counted);
        });
    }
}

async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    router: axum::Router,
    app: &App,
    settings: &Settings,
    shutdown: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().ok();
    // Boxed: the stream then moves as a pointer, not as its TLS state.
    let tls = match tokio::time::timeout(settings.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Box::new(tls),
        Ok(Err(e)) => {
            debug!(?peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(?peer, "TLS handshake timed out");
            return;
        }
    };
    let activity = Arc::new(Activity::default());
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let conn = activity.clone();
    let service = move |mut req: Request<Incoming>| {
        let in_flight = conn.start();
        req.extensions_mut().insert(ConnHandle(conn.clone()));
        // The router is always ready; a clone is a reference count.
        let call = tower_service::Service::call(&mut router.clone(), req);
        Box::pin(async move {
            let resp = match call.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            Ok::<_, Infallible>(resp.map(|b| TrackedBody::new(b, in_flight)))
        })
    };
    let closed = if h2 {
        crate::conn::h2::serve(tls, &settings.conn, activity, service, shutdown).await
    } else {
        crate::conn::http1::serve(tls, &settings.conn, activity, service, shutdown).await
    };
    if let Some(reason) = closed {
        debug!(
            ?peer,
            reason = reason.as_str(),
            "connection closed by a limit"
        );
        app.metrics.connection_closed(reason);
    }
}
