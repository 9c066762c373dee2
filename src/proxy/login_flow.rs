//! Browser login at the proxy: the session check on every request, and the
//! endpoints under `/.tlsward/` (callback, logout, back-channel logout).
//! The pure parts (cookies, state, PKCE, claim checks) are in
//! `crate::oidc::{session, login}`; this module does the HTTP and the
//! exchanges with the provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_lc_rs::rand::SystemRandom;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, StatusCode};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use super::authenticate::{AuthMeter, AuthRuntime, Checked, Passed, answer, now};
use super::host_auth::{DEFAULT_ALGORITHMS, HostAuth, LoginAuth, RESERVED_PREFIX};
use crate::clientauth::LoginProvider;
use crate::oidc::client::{Discovery, FetchError, HttpClient};
use crate::oidc::jwt::{self, TokenRules};
use crate::oidc::login::{self, RequestHints, RevokedSessions};
use crate::oidc::session::{self, Session, SessionError};
use crate::telemetry::AuthMethod;

/// The session cookies' base name: `__Host-tlsward-session`, `-0`, `-1`…
pub const SESSION_COOKIE: &str = "tlsward-session";

/// Sessions remembered as logged out, across all hosts.
const REVOKED_CAPACITY: usize = 100_000;

/// Largest back-channel logout request body.
const MAX_LOGOUT_BODY: usize = 64 * 1024;

/// Clock skew allowed on ID and logout tokens.
const SKEW: i64 = 60;

/// Refresh outcomes kept so that requests that waited for a refresh reuse
/// it; older ones are dropped.
const REFRESH_MEMORY_SECS: i64 = 30;

/// Login state shared by every connection.
#[derive(Default)]
pub struct LoginState {
    revoked: Mutex<Option<RevokedSessions>>,
    /// One lock per refresh token being refreshed, so that a session's
    /// concurrent requests wait for one refresh instead of racing.
    refreshing: Mutex<HashMap<[u8; 32], RefreshLock>>,
}

/// Held while one session's tokens are refreshed; holds the outcome after.
type RefreshLock = Arc<tokio::sync::Mutex<Option<Refreshed>>>;

/// A finished refresh: the new session, and when it was made.
#[derive(Clone)]
struct Refreshed {
    at: i64,
    session: Option<Session>,
}

impl LoginState {
    fn is_revoked(&self, s: &Session, now: i64) -> bool {
        self.revoked
            .lock()
            .ok()
            .and_then(|r| r.as_ref().map(|r| r.is_revoked(s, now)))
            .unwrap_or(false)
    }

    fn revoke(&self, iss: &str, who: &login::LogoutSubject, now: i64, until: i64) -> usize {
        let Ok(mut r) = self.revoked.lock() else {
            return 0;
        };
        r.get_or_insert_with(|| RevokedSessions::new(REVOKED_CAPACITY))
            .revoke(iss, who, now, until)
    }

    fn refresh_lock(&self, key: [u8; 32], now: i64) -> RefreshLock {
        let Ok(mut map) = self.refreshing.lock() else {
            return Arc::default();
        };
        if map.len() > 1024 {
            map.retain(|_, l| {
                Arc::strong_count(l) > 1
                    || l.try_lock()
                        .map(|g| g.as_ref().is_some_and(|r| now - r.at < REFRESH_MEMORY_SECS))
                        .unwrap_or(true)
            });
        }
        map.entry(key).or_default().clone()
    }
}

/// `https://host[:port]` as the client addressed us: the port the client
/// used (when it sent one) must be in the redirect URIs, or the provider
/// sends the browser to port 443. `host` is the matched, normalised name;
/// only a numeric port is taken from the request.
fn origin(req: &Request<Incoming>, host: &str) -> String {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let port = authority
        .rsplit_once(':')
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
        .filter(|p| *p != "443");
    match port {
        Some(p) => format!("https://{host}:{p}"),
        None => format!("https://{host}"),
    }
}

fn cookie_header(req: &Request<Incoming>) -> String {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join("; ")
}

fn set_cookies(values: &[String]) -> Vec<HeaderValue> {
    values
        .iter()
        .filter_map(|c| HeaderValue::from_str(c).ok())
        .collect()
}

fn redirect(location: &str, cookies: &[String]) -> Checked {
    let mut headers: Vec<(HeaderName, HeaderValue)> = set_cookies(cookies)
        .into_iter()
        .map(|v| (header::SET_COOKIE, v))
        .collect();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.push((header::LOCATION, v));
    }
    Checked::Answer(answer(StatusCode::FOUND, "redirecting\n", headers))
}

fn refuse(status: StatusCode, message: &str, cookies: &[String]) -> Checked {
    let headers = set_cookies(cookies)
        .into_iter()
        .map(|v| (header::SET_COOKIE, v));
    Checked::Answer(answer(status, &format!("{message}\n"), headers))
}

/// The provider's endpoints: discovery for OIDC, fixed paths for GitHub.
struct Endpoints {
    authorize: String,
    token: String,
    end_session: Option<String>,
    iss_in_response: bool,
}

async fn endpoints(login: &LoginAuth, runtime: &AuthRuntime) -> Option<Endpoints> {
    match login.provider {
        LoginProvider::GitHub => {
            let base = login
                .github
                .as_ref()
                .and_then(|g| g.url.clone())
                .unwrap_or_else(|| "https://github.com".into());
            let base = base.trim_end_matches('/');
            Some(Endpoints {
                authorize: format!("{base}/login/oauth/authorize"),
                token: format!("{base}/login/oauth/access_token"),
                end_session: None,
                iss_in_response: false,
            })
        }
        LoginProvider::OIDC => {
            let cache = runtime.keys(login.keys.as_ref()?)?;
            let d: Arc<Discovery> = match cache.discovery() {
                Some(d) => d,
                None => {
                    let _ = cache.refresh().await;
                    cache.discovery()?
                }
            };
            Some(Endpoints {
                authorize: d.authorization_endpoint.clone()?,
                token: d.token_endpoint.clone()?,
                end_session: d.end_session_endpoint.clone(),
                iss_in_response: d.authorization_response_iss_parameter_supported,
            })
        }
    }
}

fn client(login: &LoginAuth) -> Option<HttpClient> {
    super::authenticate::idp_client(login.ca_pem.as_deref()).ok()
}

/// A request with no usable session: 401 for API clients, else a redirect
/// to the provider with a new flow.
async fn unauthenticated(
    req: &Request<Incoming>,
    login: &LoginAuth,
    host: &str,
    runtime: &AuthRuntime,
    metrics: &AuthMeter<'_>,
    result: &'static str,
    mut cookies: Vec<String>,
) -> Checked {
    let h = req.headers();
    let text = |n: HeaderName| h.get(n).and_then(|v| v.to_str().ok());
    let hints = RequestHints {
        method: req.method().as_str(),
        has_authorization: h.contains_key(header::AUTHORIZATION),
        accept: text(header::ACCEPT),
        x_requested_with: text(HeaderName::from_static("x-requested-with")),
        sec_fetch_mode: text(HeaderName::from_static("sec-fetch-mode")),
    };
    metrics.count(AuthMethod::Session, result);
    if login::wants_401(&hints) {
        return refuse(StatusCode::UNAUTHORIZED, "login required", &cookies);
    }
    let return_to = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    start_login(req, login, host, runtime, metrics, &return_to, &mut cookies).await
}

async fn start_login(
    req: &Request<Incoming>,
    login: &LoginAuth,
    host: &str,
    runtime: &AuthRuntime,
    metrics: &AuthMeter<'_>,
    return_to: &str,
    cookies: &mut Vec<String>,
) -> Checked {
    let Some(ep) = endpoints(login, runtime).await else {
        metrics.count(AuthMethod::Login, "provider_unavailable");
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "the login provider cannot be reached; try again shortly",
            cookies,
        );
    };
    let started = match login::start(
        &login.session_keys,
        host,
        return_to,
        &cookie_header(req),
        now(),
        &SystemRandom::new(),
    ) {
        Ok(s) => s,
        Err(e) => {
            warn!(host, error = %e, "cannot start a login");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot start a login",
                cookies,
            );
        }
    };
    let scopes: Vec<&str> = login.scopes.iter().map(String::as_str).collect();
    let redirect_uri = format!("{}{RESERVED_PREFIX}callback", origin(req, host));
    let url = match login.provider {
        LoginProvider::OIDC => login::authorize_url(
            &ep.authorize,
            &login.client_id,
            &redirect_uri,
            &scopes,
            &started.state,
            &started.nonce,
            &started.code_challenge,
        ),
        LoginProvider::GitHub => login::oauth_authorize_url(
            &ep.authorize,
            &login.client_id,
            &redirect_uri,
            &scopes,
            &started.state,
            &started.code_challenge,
        ),
    };
    metrics.count(AuthMethod::Login, "login_started");
    cookies.extend(started.set_cookies);
    redirect(&url, cookies)
}

/// Checks the session cookie of a request to a login host.
pub async fn session(
    mut req: Request<Incoming>,
    auth: &HostAuth,
    login: &LoginAuth,
    host: &str,
    cert: Option<&[u8; 32]>,
    runtime: &AuthRuntime,
    metrics: &AuthMeter<'_>,
) -> Checked {
    let now = now();
    let cookie = cookie_header(&req);
    let opened = session::open_cookies(
        &login.session_keys,
        host,
        std::iter::once(cookie.as_str()),
        SESSION_COOKIE,
        now,
    );
    let clear = || session::clear_cookies(std::iter::once(cookie.as_str()), SESSION_COOKIE);
    let mut s = match opened {
        Ok(s) => s,
        Err(SessionError::Missing) => {
            return unauthenticated(
                &req,
                login,
                host,
                runtime,
                metrics,
                "session_missing",
                Vec::new(),
            )
            .await;
        }
        Err(e) => {
            let result = match e {
                SessionError::Expired => "session_expired",
                SessionError::UnknownKey => "session_unknown_key",
                _ => "session_invalid",
            };
            return unauthenticated(&req, login, host, runtime, metrics, result, clear()).await;
        }
    };
    if auth.checks_certificates && !s.bound_to(cert) {
        // A cookie carried to another device: refuse it without touching
        // the rightful owner's session.
        metrics.count(AuthMethod::Session, "cert_binding_mismatch");
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this session belongs to another client certificate",
            &[],
        );
    }
    if runtime.login.is_revoked(&s, now) {
        return unauthenticated(
            &req,
            login,
            host,
            runtime,
            metrics,
            "session_revoked",
            clear(),
        )
        .await;
    }
    let mut passed = Passed::default();
    let expired_token = access_token_expiring(&s, now);
    if expired_token && s.refresh_token.is_some() {
        match refresh(&s, login, runtime, now).await {
            Some(fresh) => {
                match seal_within_budget(&login.session_keys, host, &fresh, &cookie, now) {
                    Ok(c) => passed.set_cookies = set_cookies(&c),
                    Err(e) => warn!(host, error = %e, "cannot store the refreshed session"),
                }
                s = fresh;
            }
            None => {
                return unauthenticated(
                    &req,
                    login,
                    host,
                    runtime,
                    metrics,
                    "refresh_failed",
                    clear(),
                )
                .await;
            }
        }
    }
    metrics.count(AuthMethod::Session, "ok");
    let headers = req.headers_mut();
    match session::strip_session_cookies(&cookie, SESSION_COOKIE) {
        Some(rest) => match HeaderValue::from_str(&rest) {
            Ok(v) => {
                headers.insert(header::COOKIE, v);
            }
            Err(_) => {
                headers.remove(header::COOKIE);
            }
        },
        None => {
            headers.remove(header::COOKIE);
        }
    }
    let h = &login.headers;
    let mut put = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    };
    put(&h.user, &s.user);
    if let Some(e) = &s.email {
        put(&h.email, e);
    }
    if !s.groups.is_empty() {
        put(&h.groups, &s.groups.join(","));
    }
    if let (Some(name), Some(token)) = (&h.access_token, &s.access_token) {
        put(name, token);
    }
    Checked::Pass(req, passed)
}

/// The most session-cookie bytes (names and values) a request may carry.
/// Browsers, curl and most proxies in front cap a Cookie header near 8 KiB
/// (curl: 8190 bytes), and the site's own cookies need room too: a session
/// sent only in part would loop through login.
pub const SESSION_COOKIE_BUDGET: usize = 6 * 1024;

/// Seals `s` into cookies whose `name=value` pairs fit in
/// [`SESSION_COOKIE_BUDGET`]: whole if it fits, else without the ID token
/// (only logout's hint is lost), else [`Session::minimal`] (no tokens, so no
/// refresh).
fn seal_within_budget(
    keys: &session::SessionKeys,
    host: &str,
    s: &Session,
    cookie: &str,
    now: i64,
) -> Result<Vec<String>, SessionError> {
    let size = |cookies: &[String]| -> usize {
        cookies
            .iter()
            .filter(|c| !c.contains("Max-Age=0"))
            .map(|c| c.split(';').next().map_or(0, str::len))
            .sum()
    };
    let without_id_token = Session {
        id_token: None,
        ..s.clone()
    };
    for candidate in [s, &without_id_token] {
        match session::seal_cookies(keys, host, candidate, SESSION_COOKIE, cookie, now) {
            Ok(c) if size(&c) <= SESSION_COOKIE_BUDGET => return Ok(c),
            Ok(_) | Err(SessionError::TooLarge) => {}
            Err(e) => return Err(e),
        }
    }
    session::seal_cookies(keys, host, &s.minimal(), SESSION_COOKIE, cookie, now)
}

/// The provider's token response (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    id_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<i64>,
}

async fn token_request(
    login: &LoginAuth,
    endpoint: &str,
    form: &[(&str, &str)],
) -> Result<TokenResponse, FetchError> {
    let client = client(login).ok_or(FetchError::BadUrl("no client"))?;
    let resp = client
        .post_form(
            endpoint,
            form,
            Some((&login.client_id, &login.client_secret)),
        )
        .await?
        .success()?;
    serde_json::from_slice(&resp.body).map_err(|_| FetchError::BadUrl("not a token response"))
}

/// Whether the session's access token expires within the next 5 s: it is
/// refreshed then, so that the upstream never gets one that expires in
/// flight.
fn access_token_expiring(s: &Session, now: i64) -> bool {
    s.access_token_expires_at.is_some_and(|at| at <= now + 5)
}

/// Refreshes the session's tokens, once per session however many requests
/// ask at the same time: the others wait and reuse the result.
async fn refresh(
    s: &Session,
    login: &LoginAuth,
    runtime: &AuthRuntime,
    now: i64,
) -> Option<Session> {
    let token = s.refresh_token.as_deref()?;
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let lock = runtime.login.refresh_lock(key, now);
    let mut done = lock.lock().await;
    // A remembered refresh is reused only while its own access token is
    // fresh: a provider that does not rotate refresh tokens hands the same
    // one back, and an outcome from a few seconds ago may hold a token that
    // has expired since.
    if let Some(r) = done.as_ref().filter(|r| {
        now - r.at < REFRESH_MEMORY_SECS
            && r.session
                .as_ref()
                .is_none_or(|s| !access_token_expiring(s, now))
    }) {
        return r.session.clone();
    }
    let ep = endpoints(login, runtime).await?;
    let result = token_request(
        login,
        &ep.token,
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
    )
    .await;
    let fresh = match result {
        Ok(t) => Some(Session {
            access_token: t.access_token.or_else(|| s.access_token.clone()),
            access_token_expires_at: t.expires_in.map(|e| now + e),
            refresh_token: t.refresh_token.or_else(|| s.refresh_token.clone()),
            id_token: t.id_token.or_else(|| s.id_token.clone()),
            ..s.clone()
        }),
        Err(e) => {
            warn!(issuer = %s.iss, error = %e, "session refresh failed");
            None
        }
    };
    *done = Some(Refreshed {
        at: now,
        session: fresh.clone(),
    });
    fresh
}

/// The endpoints under `/.tlsward/`.
pub async fn endpoint(
    req: Request<Incoming>,
    auth: &HostAuth,
    login: &LoginAuth,
    host: &str,
    cert: Option<&[u8; 32]>,
    runtime: &AuthRuntime,
    metrics: &AuthMeter<'_>,
) -> Checked {
    let path = req.uri().path().to_string();
    match path.strip_prefix(RESERVED_PREFIX).unwrap_or_default() {
        "callback" => callback(&req, auth, login, host, cert, runtime, metrics).await,
        "login" => {
            let rd = req
                .uri()
                .query()
                .and_then(|q| login::query_param(q, "rd"))
                .unwrap_or_else(|| "/".to_string());
            start_login(&req, login, host, runtime, metrics, &rd, &mut Vec::new()).await
        }
        "logout" => logout(&req, login, host, runtime, metrics).await,
        "backchannel-logout" => backchannel_logout(req, login, runtime, metrics, host).await,
        _ => refuse(StatusCode::NOT_FOUND, "not found", &[]),
    }
}

async fn callback(
    req: &Request<Incoming>,
    auth: &HostAuth,
    login: &LoginAuth,
    host: &str,
    cert: Option<&[u8; 32]>,
    runtime: &AuthRuntime,
    metrics: &AuthMeter<'_>,
) -> Checked {
    let now = now();
    let fail = |result: &'static str, status: StatusCode, message: &str, cookies: &[String]| {
        metrics.count(AuthMethod::Login, result);
        refuse(status, message, cookies)
    };
    let Some(ep) = endpoints(login, runtime).await else {
        return fail(
            "provider_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "the login provider cannot be reached; try again shortly",
            &[],
        );
    };
    let expected_issuer = login.issuer.as_deref().unwrap_or_default();
    let cookie = cookie_header(req);
    let cb = match login::callback(
        &login.session_keys,
        host,
        req.uri().query().unwrap_or_default(),
        &cookie,
        expected_issuer,
        ep.iss_in_response,
        now,
    ) {
        Ok(cb) => cb,
        Err(e) => {
            info!(host, error = %e, "login callback refused");
            let result = match e {
                login::CallbackError::IssuerMismatch | login::CallbackError::IssuerMissing => {
                    "wrong_issuer"
                }
                login::CallbackError::IdpError { .. } => "provider_refused",
                _ => "state_mismatch",
            };
            return fail(
                result,
                StatusCode::BAD_REQUEST,
                &format!("login failed: {e}"),
                &[],
            );
        }
    };
    let clear_flow = [cb.clear_cookie.clone()];
    let redirect_uri = format!("{}{RESERVED_PREFIX}callback", origin(req, host));
    let tokens = match token_request(
        login,
        &ep.token,
        &[
            ("grant_type", "authorization_code"),
            ("code", &cb.code),
            ("redirect_uri", &redirect_uri),
            ("code_verifier", &cb.flow.verifier),
        ],
    )
    .await
    {
        Ok(t) => t,
        Err(e) => {
            // A replayed or expired code ends here: the provider refuses it.
            info!(host, error = %e, "code exchange refused");
            return fail(
                "code_exchange_failed",
                StatusCode::BAD_REQUEST,
                "login failed: the provider refused the authorization code; start again",
                &clear_flow,
            );
        }
    };
    let identity = match login.provider {
        LoginProvider::OIDC => {
            id_token_identity(&tokens, login, runtime, &cb.flow.nonce, now).await
        }
        LoginProvider::GitHub => github_identity(&tokens, login).await,
    };
    let claims = match identity {
        Ok(c) => c,
        // A known user outside the allowed organizations and teams: the
        // same answer as a failed claim rule.
        Err(result @ "claims_denied") => {
            return fail(
                result,
                StatusCode::FORBIDDEN,
                "your account is not allowed here",
                &clear_flow,
            );
        }
        Err(result) => {
            return fail(
                result,
                StatusCode::UNAUTHORIZED,
                "login failed: the identity could not be verified",
                &clear_flow,
            );
        }
    };
    let ok = login.claims.iter().all(|r| jwt::rule_holds(r, &claims));
    if !ok {
        return fail(
            "claims_denied",
            StatusCode::FORBIDDEN,
            "your account is not allowed here",
            &clear_flow,
        );
    }
    let text = |k: &str| claims.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let sub = text("sub").unwrap_or_default();
    let groups = jwt::lookup_strings(&claims, &login.groups_claim);
    let mut s = Session {
        user: text("preferred_username")
            .or_else(|| text("login"))
            .unwrap_or_else(|| sub.clone()),
        sub,
        email: text("email"),
        groups,
        sid: text("sid"),
        iss: expected_issuer.to_string(),
        issued_at: now,
        expires_at: now + login.session_lifetime,
        access_token: tokens.access_token.clone(),
        access_token_expires_at: tokens.expires_in.map(|e| now + e),
        refresh_token: tokens.refresh_token.clone(),
        id_token: tokens.id_token.clone(),
        cert_sha256: if auth.checks_certificates {
            cert.copied()
        } else {
            None
        },
    };
    if login.minimal_session {
        s = s.minimal();
    }
    let mut cookies = match seal_within_budget(&login.session_keys, host, &s, &cookie, now) {
        Ok(c) => c,
        Err(e) => {
            warn!(host, error = %e, "cannot seal the session");
            return fail(
                "session_too_large",
                StatusCode::INTERNAL_SERVER_ERROR,
                "login failed: the session cannot be stored",
                &clear_flow,
            );
        }
    };
    cookies.push(cb.clear_cookie);
    metrics.count(AuthMethod::Login, "login_completed");
    info!(host, user = %s.user, "login completed");
    redirect(&cb.flow.return_to, &cookies)
}

/// The ID token's claims, once its signature, issuer, audience, nonce and
/// `at_hash` are checked; else the metric result.
async fn id_token_identity(
    tokens: &TokenResponse,
    login: &LoginAuth,
    runtime: &AuthRuntime,
    nonce: &str,
    now: i64,
) -> Result<serde_json::Map<String, serde_json::Value>, &'static str> {
    let id_token = tokens.id_token.as_deref().ok_or("id_token_missing")?;
    let verified = verify_with_login_keys(id_token, login, runtime, now).await?;
    login::check_id_token_claims(
        &verified.claims,
        &login.client_id,
        login.issuer.as_deref().unwrap_or_default(),
        nonce,
        tokens.access_token.as_deref(),
        verified.algorithm.as_str(),
        now,
        SKEW,
    )
    .map_err(|e| {
        info!(error = %e, "ID token refused");
        "id_token_invalid"
    })?;
    Ok(verified.claims)
}

/// Verifies a token signed by the login's issuer (an ID token or a logout
/// token): signature, `iss`, `aud` = the client ID, time claims.
async fn verify_with_login_keys(
    token: &str,
    login: &LoginAuth,
    runtime: &AuthRuntime,
    now: i64,
) -> Result<jwt::Verified, &'static str> {
    let src = login.keys.as_ref().ok_or("provider_unavailable")?;
    let cache = runtime.keys(src).ok_or("provider_unavailable")?;
    let mut rules = TokenRules::new(login.issuer.clone().unwrap_or_default());
    rules.audiences = vec![login.client_id.clone()];
    rules.algorithms = DEFAULT_ALGORITHMS.to_vec();
    rules.clock_skew_secs = SKEW as u64;
    rules.binding = jwt::Binding::Ignore;
    let keys = cache.current();
    let first = jwt::parse(token)
        .map_err(|e| e.reason())?
        .verify(&keys, &rules, now);
    match first {
        Err(jwt::TokenError::UnknownKey { kid }) => {
            let keys = cache
                .refresh_for_unknown_kid(kid.as_deref().unwrap_or_default())
                .await;
            jwt::parse(token)
                .and_then(|p| p.verify(&keys, &rules, now))
                .map_err(|e| e.reason())
        }
        other => other.map_err(|e| e.reason()),
    }
}

async fn github_identity(
    tokens: &TokenResponse,
    login: &LoginAuth,
) -> Result<serde_json::Map<String, serde_json::Value>, &'static str> {
    let token = tokens.access_token.as_deref().ok_or("token_missing")?;
    let client = client(login).ok_or("provider_unavailable")?;
    let github = login.github.clone().unwrap_or_default();
    super::github::identity(&client, &github, token).await
}

async fn logout(
    req: &Request<Incoming>,
    login: &LoginAuth,
    host: &str,
    runtime: &AuthRuntime,
    metrics: &AuthMeter<'_>,
) -> Checked {
    let cookie = cookie_header(req);
    let s = session::open_cookies(
        &login.session_keys,
        host,
        std::iter::once(cookie.as_str()),
        SESSION_COOKIE,
        now(),
    )
    .ok();
    let cookies = session::clear_cookies(std::iter::once(cookie.as_str()), SESSION_COOKIE);
    metrics.count(AuthMethod::Login, "logout");
    let back = format!("{}{}", origin(req, host), login.post_logout_path);
    let end_session = match login.provider {
        LoginProvider::OIDC => endpoints(login, runtime).await.and_then(|e| e.end_session),
        LoginProvider::GitHub => None,
    };
    match end_session {
        Some(end) => {
            let mut params: Vec<(&str, &str)> = vec![
                ("client_id", &login.client_id),
                ("post_logout_redirect_uri", &back),
            ];
            if let Some(hint) = s.as_ref().and_then(|s| s.id_token.as_deref()) {
                params.push(("id_token_hint", hint));
            }
            let sep = if end.contains('?') { '&' } else { '?' };
            let url = format!("{end}{sep}{}", crate::oidc::client::form_urlencode(&params));
            redirect(&url, &cookies)
        }
        None => redirect(&login.post_logout_path, &cookies),
    }
}

async fn backchannel_logout(
    req: Request<Incoming>,
    login: &LoginAuth,
    runtime: &AuthRuntime,
    metrics: &AuthMeter<'_>,
    host: &str,
) -> Checked {
    let bad = |why: &str| {
        metrics.count(AuthMethod::Login, "backchannel_logout_refused");
        let body = format!(r#"{{"error":"invalid_request","error_description":"{why}"}}"#);
        let mut r = answer(
            StatusCode::BAD_REQUEST,
            &body,
            [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        );
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Checked::Answer(r)
    };
    if req.method() != hyper::Method::POST {
        return bad("POST a logout_token");
    }
    let body = match Limited::new(req.into_body(), MAX_LOGOUT_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return bad("unreadable body"),
    };
    let Some(token) = std::str::from_utf8(&body)
        .ok()
        .and_then(|b| login::query_param(b, "logout_token"))
    else {
        return bad("no logout_token");
    };
    let now = now();
    // A logout token has no `exp` requirement in the spec, but the token
    // core requires one; providers (oidc-provider, Keycloak) send it.
    let verified = match verify_with_login_keys(&token, login, runtime, now).await {
        Ok(v) => v,
        Err(result) => {
            info!(host, reason = result, "logout token refused");
            return bad("invalid logout_token");
        }
    };
    let who = match login::check_logout_token_claims(
        &verified.claims,
        &login.client_id,
        login.issuer.as_deref().unwrap_or_default(),
        now,
        SKEW,
    ) {
        Ok(w) => w,
        Err(e) => {
            info!(host, error = %e, "logout token refused");
            return bad("invalid logout_token");
        }
    };
    let until = now + login.session_lifetime;
    let n = runtime.login.revoke(
        login.issuer.as_deref().unwrap_or_default(),
        &who,
        now,
        until,
    );
    metrics.count(AuthMethod::Login, "backchannel_logout");
    info!(host, revoked = n, "back-channel logout");
    let mut r = answer(StatusCode::OK, "", []);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Checked::Answer(r)
}
