//! The pure pieces of browser login (OpenID Connect authorization-code
//! flow with PKCE): starting a login, checking the IdP's redirect back,
//! the ID token's and logout token's claims (their signatures are checked
//! by `jwt`), and revoked sessions. No I/O; `now` and randomness come in.
//!
//! Each login keeps its state in its own short-lived cookie
//! (`__Host-tlsward-flow-<first 8 characters of state>`), sealed with the
//! session keys for the purpose "flow", so several tabs can log in at once.

use std::collections::HashMap;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::session::{
    self, FLOW_COOKIE_PREFIX, Purpose, Session, SessionError, SessionKeys, cookie_pairs,
    expire_cookie,
};

/// How long a login may take, from redirect to callback (seconds).
pub const FLOW_MAX_AGE: i64 = 600;

/// At most this many logins in flight per browser; older ones are dropped.
pub const MAX_FLOWS: usize = 4;

/// Flow cookies looked at per request; more are expired unread.
const MAX_FLOW_COOKIES_READ: usize = 16;

/// Clock skew tolerated on a flow's creation time (seconds).
const FLOW_SKEW: i64 = 60;

/// Longest return path kept (it rides in a cookie).
const MAX_RETURN_PATH: usize = 2048;

/// The event a back-channel logout token must carry.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Why a login could not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginError {
    /// The system's random source failed.
    #[error("the random source failed")]
    Random,
    /// The flow cookie could not be sealed.
    #[error("sealing the login-flow cookie failed: {0}")]
    Seal(#[from] SessionError),
}

/// 32 random bytes as unpadded base64url: 43 characters.
fn random_token(rng: &dyn SecureRandom) -> Result<String, LoginError> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes).map_err(|_| LoginError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A PKCE pair (RFC 7636, method S256).
#[derive(Clone, PartialEq, Eq)]
pub struct Pkce {
    /// Kept in the flow cookie, sent with the token request.
    pub verifier: String,
    /// Sent in the authorization request.
    pub challenge: String,
}

impl std::fmt::Debug for Pkce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkce")
            .field("challenge", &self.challenge)
            .finish_non_exhaustive()
    }
}

impl Pkce {
    /// A fresh verifier (43 characters from 32 random bytes) and its challenge.
    pub fn generate(rng: &dyn SecureRandom) -> Result<Pkce, LoginError> {
        let verifier = random_token(rng)?;
        let challenge = pkce_challenge(&verifier);
        Ok(Pkce {
            verifier,
            challenge,
        })
    }
}

/// `base64url(SHA-256(verifier))`, the S256 code challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

/// One login in flight, kept in its own sealed cookie.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    /// The `state` sent to the IdP.
    #[serde(rename = "s")]
    pub state: String,
    /// The `nonce` the ID token must carry.
    #[serde(rename = "n")]
    pub nonce: String,
    /// The PKCE verifier for the token request.
    #[serde(rename = "v")]
    pub verifier: String,
    /// Where to send the browser after login: a checked same-origin path.
    #[serde(rename = "r")]
    pub return_to: String,
    /// When the login started (Unix seconds).
    #[serde(rename = "t")]
    pub created_at: i64,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // state, nonce and verifier guard the login: not for logs.
        f.debug_struct("Flow")
            .field("return_to", &self.return_to)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The cookie that holds the flow for `state`.
pub fn flow_cookie_name(state: &str) -> String {
    let short = state.get(..8).unwrap_or(state);
    format!("{FLOW_COOKIE_PREFIX}{short}")
}

fn open_flow(keys: &SessionKeys, host: &str, value: &str) -> Result<Flow, SessionError> {
    let plain = session::open(keys, Purpose::Flow, host, value)?;
    serde_json::from_slice(&plain).map_err(|_| SessionError::Malformed("bad flow JSON"))
}

fn flow_is_fresh(flow: &Flow, now: i64) -> bool {
    now.saturating_sub(flow.created_at) <= FLOW_MAX_AGE && flow.created_at <= now + FLOW_SKEW
}

/// A started login: what goes into the authorization request, and the
/// `Set-Cookie` values to send with the redirect.
#[derive(Clone)]
pub struct Started {
    /// The `state` parameter.
    pub state: String,
    /// The `nonce` parameter.
    pub nonce: String,
    /// The PKCE `code_challenge` (S256).
    pub code_challenge: String,
    /// The return path kept in the flow (`/` when the one asked for was unsafe).
    pub return_to: String,
    /// The new flow cookie last, after expiries of stale or surplus ones.
    pub set_cookies: Vec<String>,
}

impl std::fmt::Debug for Started {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Started")
            .field("return_to", &self.return_to)
            .field("set_cookies", &self.set_cookies.len())
            .finish_non_exhaustive()
    }
}

/// Starts a login for `host`: fresh state, nonce and PKCE pair, sealed in
/// a flow cookie (Max-Age 600, SameSite=Lax so it survives the top-level
/// redirect back from the IdP). `return_to` goes through
/// [`safe_return_path`]; `/` replaces an unsafe one. Flow cookies in
/// `existing_cookie_header` that are unreadable or stale are expired, and
/// the oldest live ones too, so at most [`MAX_FLOWS`] remain.
pub fn start(
    keys: &SessionKeys,
    host: &str,
    return_to: &str,
    existing_cookie_header: &str,
    now: i64,
    rng: &dyn SecureRandom,
) -> Result<Started, LoginError> {
    let state = random_token(rng)?;
    let nonce = random_token(rng)?;
    let pkce = Pkce::generate(rng)?;
    let return_to = safe_return_path(return_to).unwrap_or_else(|| "/".to_string());
    let name = flow_cookie_name(&state);

    let mut set_cookies = Vec::new();
    let mut live: Vec<(i64, &str)> = Vec::new();
    let mut read = 0;
    for (cookie, value) in cookie_pairs(existing_cookie_header) {
        if !cookie.starts_with(FLOW_COOKIE_PREFIX) || cookie == name {
            continue;
        }
        read += 1;
        let flow = (read <= MAX_FLOW_COOKIES_READ)
            .then(|| open_flow(keys, host, value).ok())
            .flatten()
            .filter(|f| flow_is_fresh(f, now) && flow_cookie_name(&f.state) == cookie);
        match flow {
            Some(f) if !live.iter().any(|(_, n)| *n == cookie) => live.push((f.created_at, cookie)),
            Some(_) => {}
            None => set_cookies.push(expire_cookie(cookie)),
        }
    }
    if live.len() >= MAX_FLOWS {
        live.sort_by_key(|(created, _)| *created);
        let surplus = live.len() + 1 - MAX_FLOWS;
        set_cookies.extend(live[..surplus].iter().map(|(_, n)| expire_cookie(n)));
    }

    let flow = Flow {
        state: state.clone(),
        nonce: nonce.clone(),
        verifier: pkce.verifier,
        return_to: return_to.clone(),
        created_at: now,
    };
    let json = serde_json::to_vec(&flow).map_err(|_| SessionError::Malformed("flow JSON"))?;
    let sealed = session::seal(keys, Purpose::Flow, host, &json)?;
    set_cookies.push(format!(
        "{name}={sealed}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={FLOW_MAX_AGE}"
    ));
    Ok(Started {
        state,
        nonce,
        code_challenge: pkce.challenge,
        return_to,
        set_cookies,
    })
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// The authorization request URL (response_type=code, PKCE S256). `openid`
/// is put first in the scopes when missing; parameters are appended with
/// `&` when the endpoint already has a query.
pub fn authorize_url(
    authorization_endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[&str],
    state: &str,
    nonce: &str,
    code_challenge: &str,
) -> String {
    let mut scope: Vec<&str> = Vec::with_capacity(scopes.len() + 1);
    if !scopes.contains(&"openid") {
        scope.push("openid");
    }
    scope.extend(scopes.iter().copied().filter(|s| !s.is_empty()));
    let scope = scope.join(" ");
    let mut url = String::from(authorization_endpoint);
    url.push(if authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    });
    let params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scope.as_str()),
        ("state", state),
        ("nonce", nonce),
        ("code_challenge", code_challenge),
        ("code_challenge_method", "S256"),
    ];
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            url.push('&');
        }
        url.push_str(name);
        url.push('=');
        percent_encode(&mut url, value);
    }
    url
}

/// GitHub's authorization request: OAuth 2.0 with PKCE S256, no `nonce`
/// and no `openid` scope (GitHub issues no ID token).
pub fn oauth_authorize_url(
    authorization_endpoint: &str,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[&str],
    state: &str,
    code_challenge: &str,
) -> String {
    let scope = scopes
        .iter()
        .copied()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut url = String::from(authorization_endpoint);
    url.push(if authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    });
    let params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scope.as_str()),
        ("state", state),
        ("code_challenge", code_challenge),
        ("code_challenge_method", "S256"),
    ];
    for (i, (name, value)) in params.iter().enumerate() {
        if i > 0 {
            url.push('&');
        }
        url.push_str(name);
        url.push('=');
        percent_encode(&mut url, value);
    }
    url
}

/// One parameter of a query string or form body, decoded; `None` when it
/// is absent, repeated or badly encoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    parse_query(query)?.remove(name)
}

/// Decodes `%XX` (and `+` as space when `plus_is_space`); `None` on a
/// broken escape.
fn percent_decode(text: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// A URL query as decoded pairs; `None` on a broken escape, non-UTF-8,
/// or a parameter given twice (RFC 6749 §3.1 forbids repeats).
fn parse_query(query: &str) -> Option<HashMap<String, String>> {
    let mut out = HashMap::new();
    for piece in query.strip_prefix('?').unwrap_or(query).split('&') {
        if piece.is_empty() {
            continue;
        }
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let name = String::from_utf8(percent_decode(name, true)?).ok()?;
        let value = String::from_utf8(percent_decode(value, true)?).ok()?;
        if out.insert(name, value).is_some() {
            return None;
        }
    }
    Some(out)
}

/// Keeps the characters RFC 6749 allows in `error` and
/// `error_description` (printable ASCII but `"` and `\`), up to `max`.
/// The result is still untrusted text: escape it before putting it in HTML.
fn sanitize(text: &str, max: usize) -> String {
    text.chars()
        .filter(|c| matches!(*c, ' '..='~') && *c != '"' && *c != '\\')
        .take(max)
        .collect()
}

/// The IdP's redirect back, checked: the code to exchange, the flow it
/// belongs to, and the `Set-Cookie` value that removes the flow cookie.
pub struct Callback {
    /// The authorization code.
    pub code: String,
    /// The login this code completes.
    pub flow: Flow,
    /// Expires the flow's cookie: send it with the response.
    pub clear_cookie: String,
}

impl std::fmt::Debug for Callback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("flow", &self.flow)
            .finish_non_exhaustive()
    }
}

/// Why the redirect back from the IdP was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CallbackError {
    /// The query is not a valid authorization response (bad encoding, a
    /// repeated parameter, no `code` or `state`).
    #[error("malformed authorization response: {0}")]
    Malformed(&'static str),
    /// The IdP answered with an error (RFC 6749 §4.1.2.1). Both fields are
    /// filtered to printable ASCII and shortened, but still come from the
    /// network: escape them before showing them.
    #[error("the identity provider refused the login: {error}")]
    IdpError {
        /// The `error` code, e.g. `access_denied`.
        error: String,
        /// The `error_description`, if any.
        description: Option<String>,
    },
    /// The response's `iss` is not the expected issuer (RFC 9207): a
    /// mix-up attack or a misconfigured issuer.
    #[error("the authorization response came from another issuer")]
    IssuerMismatch,
    /// The IdP advertises `authorization_response_iss_parameter_supported`
    /// but sent no `iss`.
    #[error("the authorization response has no iss parameter")]
    IssuerMissing,
    /// No readable flow cookie for this `state`: a forged or replayed
    /// callback, a login started in another browser, or an expired cookie.
    #[error("no login in progress for this state")]
    NoFlow,
    /// A flow cookie was found but holds another `state`.
    #[error("the state does not match the login in progress")]
    StateMismatch,
    /// The login took longer than ten minutes.
    #[error("the login took too long")]
    Expired,
}

/// Checks the IdP's redirect back to `host`: its query string (with or
/// without the leading `?`) and the request's `Cookie` header (values
/// joined with `; `). `iss_required` is the issuer's
/// `authorization_response_iss_parameter_supported`. `iss` and an IdP
/// error are looked at before the flow, so a refusal needs no cookie.
pub fn callback(
    keys: &SessionKeys,
    host: &str,
    query: &str,
    cookie_header: &str,
    expected_issuer: &str,
    iss_required: bool,
    now: i64,
) -> Result<Callback, CallbackError> {
    let params = parse_query(query).ok_or(CallbackError::Malformed("bad query encoding"))?;
    match params.get("iss") {
        Some(iss) if iss != expected_issuer => return Err(CallbackError::IssuerMismatch),
        None if iss_required => return Err(CallbackError::IssuerMissing),
        _ => {}
    }
    if let Some(error) = params.get("error") {
        return Err(CallbackError::IdpError {
            error: sanitize(error, 64),
            description: params
                .get("error_description")
                .map(|d| sanitize(d, 256))
                .filter(|d| !d.is_empty()),
        });
    }
    let state = params
        .get("state")
        .filter(|s| !s.is_empty())
        .ok_or(CallbackError::Malformed("no state"))?;
    let code = params
        .get("code")
        .filter(|c| !c.is_empty())
        .ok_or(CallbackError::Malformed("no code"))?;
    // Our states are 43 base64url characters; anything else names no cookie.
    let plausible = state.len() >= 8
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plausible {
        return Err(CallbackError::NoFlow);
    }
    let name = flow_cookie_name(state);
    let value = cookie_pairs(cookie_header)
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .ok_or(CallbackError::NoFlow)?;
    let flow = open_flow(keys, host, value).map_err(|_| CallbackError::NoFlow)?;
    if verify_slices_are_equal(flow.state.as_bytes(), state.as_bytes()).is_err() {
        return Err(CallbackError::StateMismatch);
    }
    if !flow_is_fresh(&flow, now) {
        return Err(CallbackError::Expired);
    }
    Ok(Callback {
        code: code.clone(),
        flow,
        clear_cookie: expire_cookie(&name),
    })
}

/// The return path if it is a same-origin relative path, else `None`
/// (use `/`). It must start with one `/` (not `//` or `/\`), hold no
/// backslash, space, control or non-ASCII character, and be a valid
/// percent-encoding that, decoded once, still obeys the same rules (so
/// `/%2F%2Fevil.com`, `/%5Cevil.com` and `/%09/evil.com` are refused).
/// Decoded spaces are allowed: `/my%20docs` is a fine path.
pub fn safe_return_path(raw: &str) -> Option<String> {
    fn shape_ok(bytes: &[u8]) -> bool {
        bytes.first() == Some(&b'/')
            && !matches!(bytes.get(1), Some(b'/' | b'\\'))
            && !bytes.iter().any(|b| *b == b'\\' || b.is_ascii_control())
    }
    let bytes = raw.as_bytes();
    if bytes.len() > MAX_RETURN_PATH
        || !shape_ok(bytes)
        || bytes.iter().any(|b| *b == b' ' || !b.is_ascii())
    {
        return None;
    }
    let decoded = percent_decode(raw, false)?;
    if !shape_ok(&decoded) {
        return None;
    }
    Some(raw.to_string())
}

/// What [`wants_401`] looks at in a request, as plain strings.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestHints<'a> {
    /// The method, as sent (methods are case-sensitive).
    pub method: &'a str,
    /// Whether an `Authorization` header is present.
    pub has_authorization: bool,
    /// `Accept`, several headers joined with `, `.
    pub accept: Option<&'a str>,
    /// `X-Requested-With`.
    pub x_requested_with: Option<&'a str>,
    /// `Sec-Fetch-Mode`.
    pub sec_fetch_mode: Option<&'a str>,
}

/// Whether an unauthenticated request should get 401 rather than a
/// redirect to the IdP: only a browser's top-level navigation can follow
/// a login redirect. 401 for: a method other than GET or HEAD; an
/// `Authorization` header; `X-Requested-With: XMLHttpRequest`;
/// `Sec-Fetch-Mode` other than `navigate`; an `Accept` naming JSON
/// (`application/json` or a `+json` type) and not `text/html`.
pub fn wants_401(r: &RequestHints<'_>) -> bool {
    if r.method != "GET" && r.method != "HEAD" {
        return true;
    }
    if r.has_authorization {
        return true;
    }
    if r.x_requested_with
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("XMLHttpRequest"))
    {
        return true;
    }
    if r.sec_fetch_mode
        .is_some_and(|v| !v.trim().eq_ignore_ascii_case("navigate"))
    {
        return true;
    }
    if let Some(accept) = r.accept {
        let types = accept.split(',').map(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        let (mut json, mut html) = (false, false);
        for t in types {
            json |=
                t == "application/json" || (t.starts_with("application/") && t.ends_with("+json"));
            html |= t == "text/html";
        }
        if json && !html {
            return true;
        }
    }
    false
}

/// Why an ID token's claims were refused (its signature is checked elsewhere).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdTokenError {
    /// A required claim is absent.
    #[error("the ID token has no `{0}` claim")]
    Missing(&'static str),
    /// A claim has the wrong JSON type.
    #[error("the ID token's `{0}` claim has the wrong type")]
    BadClaim(&'static str),
    /// `iss` is not the expected issuer.
    #[error("the ID token was issued by another issuer")]
    IssuerMismatch,
    /// `aud` does not contain this client.
    #[error("the ID token is not for this client (aud)")]
    AudienceMismatch,
    /// `azp` is present and is not this client.
    #[error("the ID token was issued to another party (azp)")]
    AzpMismatch,
    /// `aud` has several values and no `azp` names this client.
    #[error("the ID token has several audiences and no azp")]
    AzpMissing,
    /// `exp` has passed.
    #[error("the ID token has expired")]
    Expired,
    /// `iat` (or `nbf`) is in the future.
    #[error("the ID token is not valid yet")]
    NotYetValid,
    /// `nonce` is not the one this login sent.
    #[error("the ID token's nonce does not match the login")]
    NonceMismatch,
    /// `at_hash` does not match the access token.
    #[error("the ID token's at_hash does not match the access token")]
    AtHashMismatch,
    /// `at_hash` must be checked, but the algorithm has no known hash.
    #[error("no at_hash hash for signing algorithm {0}")]
    UnsupportedAlg(String),
}

/// Which claim check failed; shared by the ID token and logout token checks.
enum ClaimFault {
    Missing(&'static str),
    Bad(&'static str),
}

/// A NumericDate claim as whole seconds (fractions dropped).
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, ClaimFault> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(ClaimFault::Bad(name)),
    }
}

fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &'static str,
) -> Result<Option<&'a str>, ClaimFault> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ClaimFault::Bad(name)),
    }
}

/// `aud` as a list: a string or an array of strings.
fn audiences(claims: &Map<String, Value>) -> Result<Vec<&str>, ClaimFault> {
    match claims.get("aud") {
        None => Err(ClaimFault::Missing("aud")),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or(ClaimFault::Bad("aud")))
            .collect(),
        Some(_) => Err(ClaimFault::Bad("aud")),
    }
}

impl From<ClaimFault> for IdTokenError {
    fn from(f: ClaimFault) -> Self {
        match f {
            ClaimFault::Missing(n) => IdTokenError::Missing(n),
            ClaimFault::Bad(n) => IdTokenError::BadClaim(n),
        }
    }
}

/// The hash behind `at_hash` for a JWS algorithm (OIDC Core §3.1.3.6):
/// the one of the signature, SHA-512 for EdDSA (Ed25519).
fn at_hash_digest(alg: &str) -> Option<&'static digest::Algorithm> {
    match alg {
        "EdDSA" | "Ed25519" => Some(&digest::SHA512),
        "none" => None,
        a if a.ends_with("256") || a == "ES256K" => Some(&digest::SHA256),
        a if a.ends_with("384") => Some(&digest::SHA384),
        a if a.ends_with("512") => Some(&digest::SHA512),
        _ => None,
    }
}

/// `base64url(left half of hash(access_token))`.
pub fn at_hash(access_token: &str, alg: &str) -> Option<String> {
    let d = digest::digest(at_hash_digest(alg)?, access_token.as_bytes());
    let bytes = d.as_ref();
    Some(URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2]))
}

/// Checks an ID token's claims for this login (OIDC Core §3.1.3.7): `iss`
/// exact; `aud` contains `client_id`; `azp`, when present, is `client_id`,
/// and is required when `aud` has several values; `exp` not passed and
/// `iat` (and `nbf`) not in the future, each within `skew` seconds; `nonce`
/// equal to the flow's; `at_hash`, when present and an access token came
/// with it, matching that token under the hash of `alg`.
#[allow(clippy::too_many_arguments)]
pub fn check_id_token_claims(
    claims: &Map<String, Value>,
    client_id: &str,
    expected_issuer: &str,
    nonce: &str,
    access_token: Option<&str>,
    alg: &str,
    now: i64,
    skew: i64,
) -> Result<(), IdTokenError> {
    let iss = string_claim(claims, "iss")?.ok_or(IdTokenError::Missing("iss"))?;
    if iss != expected_issuer {
        return Err(IdTokenError::IssuerMismatch);
    }
    string_claim(claims, "sub")?.ok_or(IdTokenError::Missing("sub"))?;
    let aud = audiences(claims)?;
    if !aud.contains(&client_id) {
        return Err(IdTokenError::AudienceMismatch);
    }
    match string_claim(claims, "azp")? {
        Some(azp) if azp != client_id => return Err(IdTokenError::AzpMismatch),
        None if aud.len() > 1 => return Err(IdTokenError::AzpMissing),
        _ => {}
    }
    let exp = numeric_date(claims, "exp")?.ok_or(IdTokenError::Missing("exp"))?;
    if now.saturating_sub(skew) >= exp {
        return Err(IdTokenError::Expired);
    }
    let iat = numeric_date(claims, "iat")?.ok_or(IdTokenError::Missing("iat"))?;
    if iat > now.saturating_add(skew) {
        return Err(IdTokenError::NotYetValid);
    }
    if numeric_date(claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
        return Err(IdTokenError::NotYetValid);
    }
    let got = string_claim(claims, "nonce")?.ok_or(IdTokenError::NonceMismatch)?;
    if verify_slices_are_equal(got.as_bytes(), nonce.as_bytes()).is_err() {
        return Err(IdTokenError::NonceMismatch);
    }
    if let (Some(claimed), Some(token)) = (string_claim(claims, "at_hash")?, access_token) {
        let expected =
            at_hash(token, alg).ok_or_else(|| IdTokenError::UnsupportedAlg(sanitize(alg, 16)))?;
        if verify_slices_are_equal(claimed.as_bytes(), expected.as_bytes()).is_err() {
            return Err(IdTokenError::AtHashMismatch);
        }
    }
    Ok(())
}

/// Why a back-channel logout token's claims were refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogoutTokenError {
    /// A required claim is absent.
    #[error("the logout token has no `{0}` claim")]
    Missing(&'static str),
    /// A claim has the wrong JSON type.
    #[error("the logout token's `{0}` claim has the wrong type")]
    BadClaim(&'static str),
    /// `iss` is not the expected issuer.
    #[error("the logout token was issued by another issuer")]
    IssuerMismatch,
    /// `aud` does not contain this client.
    #[error("the logout token is not for this client (aud)")]
    AudienceMismatch,
    /// `iat` is in the future.
    #[error("the logout token is not valid yet")]
    NotYetValid,
    /// `exp` has passed.
    #[error("the logout token has expired")]
    Expired,
    /// `events` lacks the back-channel logout event.
    #[error("the logout token has no back-channel logout event")]
    NoLogoutEvent,
    /// Neither `sid` nor `sub`: nothing to log out.
    #[error("the logout token names neither sid nor sub")]
    NoSubject,
    /// A `nonce` is present: this is an ID token, not a logout token.
    #[error("the logout token carries a nonce")]
    NoncePresent,
}

impl From<ClaimFault> for LogoutTokenError {
    fn from(f: ClaimFault) -> Self {
        match f {
            ClaimFault::Missing(n) => LogoutTokenError::Missing(n),
            ClaimFault::Bad(n) => LogoutTokenError::BadClaim(n),
        }
    }
}

/// Whom a logout token logs out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogoutSubject {
    /// The IdP session (`sid`): only that session ends.
    pub sid: Option<String>,
    /// The user (`sub`): without `sid`, all their sessions end.
    pub sub: Option<String>,
    /// The token's id, for a replay cache.
    pub jti: Option<String>,
}

/// Checks a logout token's claims (OpenID Back-Channel Logout 1.0 §2.6):
/// `iss` exact, `aud` contains `client_id`, `iat` present and not in the
/// future, `exp` (when present) not passed, `events` holding the
/// back-channel logout event as an object, `sid` or `sub`, and no `nonce`.
pub fn check_logout_token_claims(
    claims: &Map<String, Value>,
    client_id: &str,
    expected_issuer: &str,
    now: i64,
    skew: i64,
) -> Result<LogoutSubject, LogoutTokenError> {
    let iss = string_claim(claims, "iss")?.ok_or(LogoutTokenError::Missing("iss"))?;
    if iss != expected_issuer {
        return Err(LogoutTokenError::IssuerMismatch);
    }
    if !audiences(claims)?.contains(&client_id) {
        return Err(LogoutTokenError::AudienceMismatch);
    }
    let iat = numeric_date(claims, "iat")?.ok_or(LogoutTokenError::Missing("iat"))?;
    if iat > now.saturating_add(skew) {
        return Err(LogoutTokenError::NotYetValid);
    }
    if numeric_date(claims, "exp")?.is_some_and(|exp| now.saturating_sub(skew) >= exp) {
        return Err(LogoutTokenError::Expired);
    }
    if claims.contains_key("nonce") {
        return Err(LogoutTokenError::NoncePresent);
    }
    let event = claims
        .get("events")
        .ok_or(LogoutTokenError::Missing("events"))?
        .as_object()
        .ok_or(LogoutTokenError::BadClaim("events"))?
        .get(BACKCHANNEL_LOGOUT_EVENT)
        .ok_or(LogoutTokenError::NoLogoutEvent)?;
    if !event.is_object() {
        return Err(LogoutTokenError::BadClaim("events"));
    }
    let sid = string_claim(claims, "sid")?.map(str::to_string);
    let sub = string_claim(claims, "sub")?.map(str::to_string);
    if sid.is_none() && sub.is_none() {
        return Err(LogoutTokenError::NoSubject);
    }
    let jti = string_claim(claims, "jti")?.map(str::to_string);
    Ok(LogoutSubject { sid, sub, jti })
}

/// Sessions ended by back-channel logout, remembered until the sessions
/// they name would have expired anyway, and bounded in number.
///
/// A logout with `sid` ends that IdP session; one with only `sub` ends
/// every session of that user issued at or before the logout, so logging
/// in again afterwards works. When full, expired entries go first, then
/// the entry that would expire soonest (counted by [`revoke`](Self::revoke)'s
/// return value: a forgotten revocation is worth a metric).
#[derive(Debug)]
pub struct RevokedSessions {
    capacity: usize,
    // (issuer, sid) → remember until
    sids: HashMap<(String, String), i64>,
    // (issuer, sub) → (revoked at, remember until)
    subs: HashMap<(String, String), (i64, i64)>,
}

impl RevokedSessions {
    /// An empty set holding at most `capacity` revocations (at least one).
    pub fn new(capacity: usize) -> RevokedSessions {
        RevokedSessions {
            capacity: capacity.max(1),
            sids: HashMap::new(),
            subs: HashMap::new(),
        }
    }

    /// The number of revocations held.
    pub fn len(&self) -> usize {
        self.sids.len() + self.subs.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records a logout from issuer `iss` at `now`, remembered until
    /// `until` (now plus the longest session lifetime). Returns how many
    /// unexpired revocations were dropped to make room.
    pub fn revoke(&mut self, iss: &str, subject: &LogoutSubject, now: i64, until: i64) -> usize {
        let key = match (&subject.sid, &subject.sub) {
            (Some(sid), _) => Err((iss.to_string(), sid.clone())),
            (None, Some(sub)) => Ok((iss.to_string(), sub.clone())),
            (None, None) => return 0,
        };
        let known = match &key {
            Err(k) => self.sids.contains_key(k),
            Ok(k) => self.subs.contains_key(k),
        };
        let evicted = if known { 0 } else { self.make_room(now) };
        match key {
            Err(k) => {
                let e = self.sids.entry(k).or_insert(until);
                *e = (*e).max(until);
            }
            Ok(k) => {
                let e = self.subs.entry(k).or_insert((now, until));
                *e = (e.0.max(now), e.1.max(until));
            }
        }
        evicted
    }

    fn make_room(&mut self, now: i64) -> usize {
        if self.len() < self.capacity {
            return 0;
        }
        self.sids.retain(|_, until| *until > now);
        self.subs.retain(|_, (_, until)| *until > now);
        let mut evicted = 0;
        while self.len() >= self.capacity {
            let sid = self
                .sids
                .iter()
                .min_by_key(|(_, u)| **u)
                .map(|(k, u)| (k.clone(), *u));
            let sub = self
                .subs
                .iter()
                .min_by_key(|(_, (_, u))| *u)
                .map(|(k, (_, u))| (k.clone(), *u));
            match (sid, sub) {
                (Some((k, a)), Some((_, b))) if a <= b => {
                    self.sids.remove(&k);
                }
                (_, Some((k, _))) => {
                    self.subs.remove(&k);
                }
                (Some((k, _)), None) => {
                    self.sids.remove(&k);
                }
                (None, None) => break,
            }
            evicted += 1;
        }
        evicted
    }

    /// Whether `session` was ended by a logout still remembered at `now`.
    pub fn is_revoked(&self, session: &Session, now: i64) -> bool {
        if let Some(sid) = &session.sid {
            let key = (session.iss.clone(), sid.clone());
            if self.sids.get(&key).is_some_and(|until| *until > now) {
                return true;
            }
        }
        let key = (session.iss.clone(), session.sub.clone());
        self.subs
            .get(&key)
            .is_some_and(|(at, until)| *until > now && session.issued_at <= *at)
    }
}

#[cfg(test)]
mod tests;
