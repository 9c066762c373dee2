//! The request path's authentication step: after the client-certificate
//! and 421 checks, before routing. Bearer tokens are checked here; browser
//! sessions and the login endpoints are in `login_flow`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tracing::{debug, warn};

use super::host_auth::{HostAuth, KeySource, RESERVED_PREFIX, TokenAuth};
use super::identity::ClientIdentity;
use super::server::ProxyBody;
use super::snapshot::HostEntry;
use crate::clientauth::CertificateField;
use crate::oidc::client::{HttpClient, for_provider};
use crate::oidc::jwt::{self, TokenError, Verified};
use crate::oidc::keys::{KeyCache, KeyCacheConfig};
use crate::oidc::token_cache::CacheKey;
use crate::telemetry::{AuthLabels, AuthMethod, ProxyMetrics};
use prometheus_client::metrics::counter::Counter;

/// What the rest of the request path needs from a passed check.
#[derive(Default)]
pub struct Passed {
    /// `Set-Cookie` values for the response (a refreshed session).
    pub set_cookies: Vec<HeaderValue>,
}

/// The outcome of the authentication step.
pub enum Checked {
    /// Go on to routing with the (rewritten) request.
    Pass(Request<Incoming>, Passed),
    /// Answer now.
    Answer(Response<ProxyBody>),
}

/// Key caches and login state shared by every connection: one key cache
/// per issuer key source, whatever number of hosts name it.
#[derive(Default)]
pub struct AuthRuntime {
    caches: Mutex<HashMap<KeySource, Tracked>>,
    /// Where refresh tasks run when `track` is called off the runtime (the
    /// directory source's thread).
    handle: std::sync::OnceLock<tokio::runtime::Handle>,
    pub(super) login: super::login_flow::LoginState,
}

impl AuthRuntime {
    /// Makes sure every key source the hosts name has a cache, started on
    /// the current runtime; caches no host names any more are stopped.
    pub fn track(&self, wanted: &[KeySource], metrics: &ProxyMetrics) {
        let Some(handle) = self
            .handle
            .get()
            .cloned()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        else {
            warn!("no runtime to fetch issuer keys on");
            return;
        };
        let _ = self.handle.set(handle.clone());
        let Ok(mut caches) = self.caches.lock() else {
            return;
        };
        caches.retain(|k, tracked| {
            let keep = wanted.contains(k);
            if !keep {
                metrics.issuers.forget(&tracked.cache);
                // Dropping the sender ends the cache's refresh task.
            }
            keep
        });
        for src in wanted {
            if caches.contains_key(src) {
                continue;
            }
            match key_cache(src) {
                Ok(cache) => {
                    metrics.issuers.track(cache.clone());
                    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
                    let runner = cache.clone();
                    handle.spawn(runner.run(async move {
                        let _ = stopped.await;
                    }));
                    caches.insert(src.clone(), Tracked { cache, _stop: stop });
                }
                Err(e) => {
                    warn!(issuer = %src.issuer, error = %e, "cannot set up the issuer's key cache")
                }
            }
        }
    }

    /// Remembers the runtime that refresh tasks run on.
    pub fn use_runtime(&self, handle: tokio::runtime::Handle) {
        let _ = self.handle.set(handle);
    }

    /// The key cache of `src`, if tracked.
    pub fn keys(&self, src: &KeySource) -> Option<Arc<KeyCache>> {
        Some(self.caches.lock().ok()?.get(src)?.cache.clone())
    }
}

/// A running key cache; dropping it stops the refresh task.
struct Tracked {
    cache: Arc<KeyCache>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub use crate::oidc::client::ClientSetupError;

/// An HTTP client for one provider: see [`for_provider`].
pub fn idp_client(ca_pem: Option<&str>) -> Result<HttpClient, ClientSetupError> {
    for_provider(ca_pem)
}

fn key_cache(src: &KeySource) -> Result<Arc<KeyCache>, ClientSetupError> {
    let client = idp_client(src.ca_pem.as_deref())?;
    let mut config = KeyCacheConfig::new(src.issuer.clone());
    config.jwks_uri = src.jwks_uri.clone();
    Ok(KeyCache::new(config, client))
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A plain-text answer with extra headers.
pub fn answer(
    status: StatusCode,
    body: &str,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
) -> Response<ProxyBody> {
    let mut r = Response::new(
        Full::new(Bytes::from(body.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (k, v) in headers {
        h.append(k, v);
    }
    r
}

/// The RFC 6750 answer to a refused token.
fn refuse_token(e: &TokenError) -> Response<ProxyBody> {
    let (status, code, description) = e.rfc6750();
    let challenge = format!(r#"Bearer error="{code}", error_description="{description}""#);
    answer(
        StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED),
        &format!("{description}\n"),
        HeaderValue::from_str(&challenge)
            .ok()
            .map(|v| (header::WWW_AUTHENTICATE, v)),
    )
}

/// RFC 6750 §3.1: a request without a token gets a bare challenge.
pub fn token_missing() -> Response<ProxyBody> {
    answer(
        StatusCode::UNAUTHORIZED,
        "a bearer token is required\n",
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))],
    )
}

/// The bearer token of `Authorization`, if the header holds one.
pub fn bearer(req: &Request<Incoming>) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Counts authentication results under the served host's label (the
/// entry's name, so a wildcard host is one series, not one per name).
pub struct AuthMeter<'a> {
    metrics: &'a ProxyMetrics,
    entry: &'a HostEntry,
}

impl AuthMeter<'_> {
    /// Counts one result.
    pub fn count(&self, method: AuthMethod, result: &'static str) {
        // Most requests pass: their counters are found once per entry.
        let ok = match (method, result) {
            (AuthMethod::Bearer, "ok") => Some(&self.entry.auth_ok[0]),
            (AuthMethod::Session, "ok") => Some(&self.entry.auth_ok[1]),
            _ => None,
        };
        match ok {
            Some(cell) => cell.get_or_init(|| self.series(method, result)).inc(),
            None => self.series(method, result).inc(),
        };
    }

    fn series(&self, method: AuthMethod, result: &'static str) -> Counter {
        self.metrics
            .authentications
            .get_or_create(&AuthLabels {
                host: self.entry.host.clone(),
                method,
                result,
            })
            .clone()
    }
}

/// Runs the host's authentication on a request. `host` is the name the
/// request asked for; `cert` the SHA-256 of the connection's client
/// certificate.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    mut req: Request<Incoming>,
    auth: &HostAuth,
    entry: &HostEntry,
    host: &str,
    identity: Option<&ClientIdentity>,
    cert: Option<&[u8; 32]>,
    runtime: &AuthRuntime,
    metrics: &ProxyMetrics,
) -> Checked {
    let metrics = &AuthMeter { metrics, entry };
    // Whatever happens next, the upstream must not see a client's own
    // version of the headers this policy vouches for.
    for name in &auth.identity_headers {
        req.headers_mut().remove(name.as_str());
    }
    let path = req.uri().path();
    if path.starts_with(RESERVED_PREFIX) || path == RESERVED_PREFIX.trim_end_matches('/') {
        return match &auth.login {
            Some(login) => {
                super::login_flow::endpoint(req, auth, login, host, cert, runtime, metrics).await
            }
            None => Checked::Answer(answer(StatusCode::NOT_FOUND, "not found\n", [])),
        };
    }
    if auth.public.matches(path) {
        metrics.count(AuthMethod::Public, "ok");
        return Checked::Pass(req, Passed::default());
    }
    match (&auth.tokens, bearer(&req).is_some()) {
        (Some(tokens), true) => {
            let outcome = bearer_check(&req, tokens, identity, cert, runtime).await;
            match outcome {
                Ok(verified) => {
                    metrics.count(AuthMethod::Bearer, "ok");
                    add_claim_headers(&mut req, tokens, &verified);
                    if !tokens.forward_authorization {
                        req.headers_mut().remove(header::AUTHORIZATION);
                    }
                    Checked::Pass(req, Passed::default())
                }
                Err(e) => {
                    metrics.count(AuthMethod::Bearer, e.reason());
                    debug!(host, reason = e.reason(), "bearer token refused");
                    Checked::Answer(refuse_token(&e))
                }
            }
        }
        _ => match &auth.login {
            Some(login) => {
                super::login_flow::session(req, auth, login, host, cert, runtime, metrics).await
            }
            None => {
                metrics.count(AuthMethod::Bearer, "token_missing");
                Checked::Answer(token_missing())
            }
        },
    }
}

/// Verifies the request's bearer token: from the cache when it was seen
/// before, else against the issuer's keys (refetched once for an unknown
/// `kid`). Then the binding and joins, which depend on the connection.
async fn bearer_check(
    req: &Request<Incoming>,
    tokens: &TokenAuth,
    identity: Option<&ClientIdentity>,
    cert: Option<&[u8; 32]>,
    runtime: &AuthRuntime,
) -> Result<Arc<Verified>, TokenError> {
    let token = bearer(req).ok_or(TokenError::Malformed { what: "no token" })?;
    let now = now();
    let key = CacheKey::of(token);
    let verified = match tokens.cache.get(&key, now) {
        Some(v) => v,
        None => {
            let mut v = verify_uncached(token, tokens, runtime, now).await?;
            v.retain_claims(&tokens.kept_claims);
            let v = Arc::new(v);
            tokens.cache.insert(key, v.clone(), now);
            v
        }
    };
    jwt::check_binding(&verified, tokens.binding, cert)?;
    for join in &tokens.joins {
        let field: &[String] = match (identity, join.certificate) {
            (None, _) => &[],
            (Some(id), CertificateField::SanEmail) => &id.emails,
            (Some(id), CertificateField::SanDns) => &id.dns_names,
            (Some(id), CertificateField::SanUri) => &id.uris,
            (Some(id), CertificateField::CommonName) => &id.common_names,
        };
        let claims = verified.claim_strings(&join.claim);
        if !claims.iter().any(|c| field.iter().any(|f| f == c)) {
            return Err(TokenError::ClaimsDenied);
        }
    }
    Ok(verified)
}

async fn verify_uncached(
    token: &str,
    tokens: &TokenAuth,
    runtime: &AuthRuntime,
    now: i64,
) -> Result<Verified, TokenError> {
    let parsed = jwt::parse(token)?;
    let issuer = tokens
        .issuers
        .iter()
        .find(|i| Some(i.rules.issuer.as_str()) == parsed.issuer())
        .ok_or(TokenError::WrongIssuer)?;
    let cache = runtime
        .keys(&issuer.keys)
        .ok_or(TokenError::UnknownKey { kid: None })?;
    let keys = cache.current();
    match parsed.verify(&keys, &issuer.rules, now) {
        Err(TokenError::UnknownKey { kid }) => {
            // A rotation: the issuer signs with a key we have not seen. One
            // refetch (shared with every other request that missed, and
            // rate-limited) decides.
            let keys = cache
                .refresh_for_unknown_kid(kid.as_deref().unwrap_or_default())
                .await;
            jwt::parse(token)?.verify(&keys, &issuer.rules, now)
        }
        other => other,
    }
}

/// Copies the configured claims to request headers (lists joined by `,`).
fn add_claim_headers(req: &mut Request<Incoming>, tokens: &TokenAuth, v: &Verified) {
    for ch in &tokens.claim_headers {
        let values = v.claim_strings(&ch.claim);
        let joined = match v.claim(&ch.claim) {
            Some(serde_json::Value::Bool(b)) => b.to_string(),
            Some(serde_json::Value::Number(n)) => n.to_string(),
            _ => values.join(","),
        };
        if joined.is_empty() {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(ch.header.as_bytes()),
            HeaderValue::from_str(&joined),
        ) {
            req.headers_mut().insert(name, value);
        }
    }
}

/// How long an IdP exchange may take inside a request.
pub const IDP_TIMEOUT: Duration = Duration::from_secs(5);
