//! Per-host path routing with Ingress semantics: `Exact`, `Prefix` by path
//! segment (`/foo` matches `/foo/bar`, not `/foobar`), `ImplementationSpecific`
//! as `Prefix`, longest match first, then the default backend.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::ingress_nginx::backend::Protocol;

/// Where matching requests go: one Service port's endpoints, round-robin.
#[derive(Debug)]
pub struct Backend {
    /// `namespace/service:port`, for logs and errors.
    pub name: String,
    /// Ready endpoint addresses.
    pub endpoints: Vec<SocketAddr>,
    /// How the endpoints are spoken to.
    pub via: Arc<Via>,
    next: AtomicUsize,
}

/// How requests reach a backend: protocol, TLS, limits. The default is
/// cleartext HTTP/1.1 under the proxy's own limits.
#[derive(Debug, Default)]
pub struct Via {
    /// The wire protocol.
    pub protocol: Protocol,
    /// The TLS client settings, for `Https` and `Grpcs`.
    pub tls: Option<Arc<UpstreamTls>>,
    /// Why the TLS settings could not be built: requests get 502 rather
    /// than go out unprotected.
    pub tls_error: Option<String>,
    /// The largest request body; `None`: no limit.
    pub body_size: Option<u64>,
    /// Connect (TCP and TLS) timeout; `None`: the proxy's.
    pub connect_timeout: Option<Duration>,
    /// Response-head timeout; `None`: the proxy's.
    pub read_timeout: Option<Duration>,
    /// Longest pause between two request-body chunks; `None`: no limit.
    pub send_timeout: Option<Duration>,
    /// `ns/name` of the Ingress whose annotations these are, for logs.
    pub ingress: String,
}

/// A TLS client configuration and the name the backend's certificate is
/// checked against.
#[derive(Debug)]
pub struct UpstreamTls {
    /// The client configuration (roots, client certificate, SNI, ALPN).
    pub config: Arc<rustls::ClientConfig>,
    /// The name checked, and sent as SNI when the configuration enables it.
    pub name: rustls::pki_types::ServerName<'static>,
}

impl Backend {
    /// A cleartext HTTP/1.1 backend over `endpoints`.
    pub fn new(name: String, endpoints: Vec<SocketAddr>) -> Arc<Self> {
        Self::with_via(name, endpoints, Arc::default())
    }

    /// A backend over `endpoints`, spoken to as `via` says.
    pub fn with_via(name: String, endpoints: Vec<SocketAddr>, via: Arc<Via>) -> Arc<Self> {
        Arc::new(Self {
            name,
            endpoints,
            via,
            next: AtomicUsize::new(0),
        })
    }

    /// The next endpoint in round-robin order, if there is any.
    pub fn pick(&self) -> Option<SocketAddr> {
        match self.endpoints.as_slice() {
            [] => None,
            // No shared counter to bump: every worker thread would contend
            // for its cache line on every request.
            [only] => Some(*only),
            all => Some(all[self.next.fetch_add(1, Ordering::Relaxed) % all.len()]),
        }
    }
}

/// How a path is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathKind {
    /// The whole path, exactly.
    Exact,
    /// Whole leading segments.
    Prefix,
}

#[derive(Clone, Debug)]
struct Route {
    kind: PathKind,
    /// Normalised: no trailing slash except for `/` itself.
    path: String,
    backend: Arc<Backend>,
}

/// The routes of one host.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
    default: Option<Arc<Backend>>,
}

fn normalize(path: &str) -> &str {
    if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix) && path.as_bytes().get(prefix.len()) == Some(&b'/'))
}

impl RouteTable {
    /// Adds a rule path; the first rule for an identical (kind, path) wins,
    /// as the API server's oldest-Ingress-first order would have it.
    pub fn add(&mut self, kind: PathKind, path: &str, backend: Arc<Backend>) {
        let path = if path.is_empty() { "/" } else { path };
        // Exact paths match byte for byte, trailing slash included.
        let path = match kind {
            PathKind::Exact => path.to_string(),
            PathKind::Prefix => normalize(path).to_string(),
        };
        if self.routes.iter().any(|r| r.kind == kind && r.path == path) {
            return;
        }
        self.routes.push(Route {
            kind,
            path,
            backend,
        });
        // Longest first; Exact before Prefix at equal length.
        self.routes.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then((a.kind == PathKind::Prefix).cmp(&(b.kind == PathKind::Prefix)))
        });
    }

    /// Sets the backend for requests no path matches, if none is set yet.
    pub fn set_default(&mut self, backend: Arc<Backend>) {
        self.default.get_or_insert(backend);
    }

    /// The backend for a request path (without query).
    pub fn lookup(&self, path: &str) -> Option<&Arc<Backend>> {
        let trimmed = normalize(path);
        self.routes
            .iter()
            .find(|r| match r.kind {
                PathKind::Exact => r.path == path,
                PathKind::Prefix => prefix_matches(&r.path, trimmed),
            })
            .map(|r| &r.backend)
            .or(self.default.as_ref())
    }

    /// Whether the host has no route at all.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.default.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(name: &str) -> Arc<Backend> {
        Backend::new(name.into(), vec!["127.0.0.1:1".parse().unwrap()])
    }

    #[test]
    fn ingress_path_semantics() {
        let mut t = RouteTable::default();
        t.add(PathKind::Prefix, "/", b("root"));
        t.add(PathKind::Prefix, "/foo", b("foo"));
        t.add(PathKind::Prefix, "/foo/bar/", b("foobar"));
        t.add(PathKind::Exact, "/foo", b("foo-exact"));
        t.add(PathKind::Exact, "/api/v1", b("api-exact"));
        t.add(PathKind::Exact, "/docs/", b("docs-exact"));
        let cases = [
            ("/", "root"),
            ("/foo", "foo-exact"),
            ("/foo/", "foo"),
            ("/foo/baz", "foo"),
            ("/foobar", "root"),
            ("/foo/bar", "foobar"),
            ("/foo/bar/baz", "foobar"),
            ("/foo/barn", "foo"),
            ("/api/v1", "api-exact"),
            ("/api/v1/", "root"),
            ("/other", "root"),
            ("/docs/", "docs-exact"),
            ("/docs", "root"),
        ];
        for (path, want) in cases {
            assert_eq!(
                t.lookup(path).map(|b| b.name.as_str()),
                Some(want),
                "{path}"
            );
        }
    }

    #[test]
    fn default_backend_and_no_match() {
        let mut t = RouteTable::default();
        t.add(PathKind::Prefix, "/app", b("app"));
        assert!(t.lookup("/other").is_none());
        t.set_default(b("default"));
        assert_eq!(t.lookup("/other").unwrap().name, "default");
        assert_eq!(t.lookup("/app/x").unwrap().name, "app");
    }

    #[test]
    fn round_robin() {
        let be = Backend::new(
            "s".into(),
            vec![
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ],
        );
        let picks: Vec<u16> = (0..4).map(|_| be.pick().unwrap().port()).collect();
        assert_eq!(picks, [1, 2, 1, 2]);
        assert!(Backend::new("e".into(), vec![]).pick().is_none());
    }
}
