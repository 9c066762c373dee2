//! The HTTP client for identity providers: discovery documents, key sets,
//! and later the token endpoint.
//!
//! Deliberately small: one request per connection, HTTP/1.1, HTTPS through
//! rustls with the process's crypto provider. It never follows redirects
//! (an IdP URL comes from configuration; a redirect to somewhere else is
//! how a fetch gets turned against internal addresses), bounds the time and
//! the response size, and never puts a credential into an error.
//!
//! Plain `http://` is refused unless [`ClientOptions::allow_plain_http`] is
//! set. It exists for tests and for an IdP reached inside the cluster over
//! a network the operator trusts: whoever can change an unauthenticated key
//! set answer can mint tokens the proxy accepts.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Where Debian, Ubuntu, Alpine and distroless images keep the system CAs.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Default limit for the whole exchange: connect, request, response body.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default limit for the TCP connect and the TLS handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default largest response body accepted (1 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// Why a root store could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootsError {
    /// The system bundle exists but could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: io::Error,
    },
    /// Extra CA PEM was given but holds no usable certificate.
    #[error("the extra CA PEM holds no usable certificate")]
    NoCertificate,
    /// A PEM block of the extra CA is malformed.
    #[error("the extra CA PEM's block {block} is malformed: {why}")]
    BadPem {
        /// Which block, from 1.
        block: usize,
        /// What the PEM reader said.
        why: rustls::pki_types::pem::Error,
    },
    /// A certificate of the extra CA is one rustls cannot use.
    #[error("the extra CA PEM's certificate {certificate} is refused: {why}")]
    BadCertificate {
        /// Which certificate, from 1.
        certificate: usize,
        /// What rustls said.
        why: rustls::Error,
    },
    /// Neither the system bundle nor the extra PEM gave a certificate.
    #[error("no trusted CA: no system bundle and no extra CA given")]
    Empty,
}

/// The trust anchors for identity providers: the system bundle file when
/// it exists (a missing file is not an error: minimal images have none)
/// plus `extra_pem`, the CAs the configuration names.
pub fn root_store(
    system_bundle: Option<&Path>,
    extra_pem: &[u8],
) -> Result<RootCertStore, RootsError> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = system_bundle {
        match std::fs::read(path) {
            Ok(pem) => {
                // The OS bundle is not ours to fix: one odd entry there
                // must not cut off every issuer, so it is read leniently.
                let certs = CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok);
                roots.add_parsable_certificates(certs);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RootsError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
    }
    if !extra_pem.iter().all(u8::is_ascii_whitespace) {
        // The configuration's own CAs: a bad block is an error, never skipped.
        let certs = crate::tls::pem_certificates(extra_pem)
            .map_err(|(block, why)| RootsError::BadPem { block, why })?;
        if certs.is_empty() {
            return Err(RootsError::NoCertificate);
        }
        for (n, cert) in certs.into_iter().enumerate() {
            roots.add(cert).map_err(|why| RootsError::BadCertificate {
                certificate: n + 1,
                why,
            })?;
        }
    }
    if roots.is_empty() {
        return Err(RootsError::Empty);
    }
    Ok(roots)
}

/// How the client behaves.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The CAs an IdP's certificate must chain to.
    pub roots: Arc<RootCertStore>,
    /// Allow `http://` URLs (tests, in-cluster IdPs). Off by default.
    pub allow_plain_http: bool,
    /// Allow `http://` to loopback addresses only (a sidecar, a local
    /// benchmark): nothing crosses the network in the clear.
    pub allow_plain_http_to_loopback: bool,
    /// Limit for the TCP connect plus the TLS handshake.
    pub connect_timeout: Duration,
    /// Limit for the whole exchange.
    pub timeout: Duration,
    /// Largest response body read; a larger one is an error.
    pub max_body_bytes: usize,
}

impl ClientOptions {
    /// HTTPS only, default timeouts and size limit.
    pub fn new(roots: RootCertStore) -> Self {
        Self {
            roots: Arc::new(roots),
            allow_plain_http: false,
            allow_plain_http_to_loopback: false,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Why a fetch failed. The messages name hosts and statuses, never a
/// credential or a body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL is not an absolute http(s) URL this client can use.
    #[error("bad URL: {0}")]
    BadUrl(&'static str),
    /// The URL is `http://` and plain HTTP is not enabled.
    #[error("plain http:// is not allowed for identity providers (https:// required)")]
    PlainHttp,
    /// The TCP connection failed.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// host:port.
        authority: String,
        /// The OS error.
        source: io::Error,
    },
    /// The TLS handshake failed (untrusted certificate, wrong name...).
    #[error("TLS with {authority}: {source}")]
    Tls {
        /// host:port.
        authority: String,
        /// What rustls said.
        source: io::Error,
    },
    /// The connect or the whole exchange took too long.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server answered with a redirect, which is never followed.
    #[error("redirected (HTTP {status}); redirects are not followed")]
    Redirected {
        /// The 3xx status.
        status: u16,
    },
    /// The server answered with an unexpected status.
    #[error("HTTP status {status}")]
    Status {
        /// The status.
        status: u16,
    },
    /// The response body is larger than the limit.
    #[error("response larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The HTTP exchange itself failed.
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
}

/// Why a provider's HTTP client could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientSetupError {
    /// The CA PEM is unusable.
    #[error("{0}")]
    Roots(#[from] RootsError),
    /// rustls refused the client configuration.
    #[error("{0}")]
    Tls(#[from] rustls::Error),
}

/// The client for one identity provider, as the proxy and the operator
/// both use it: the system CAs (when [`SYSTEM_CA_BUNDLE`] exists) plus the
/// policy's own `ca_pem`, default limits, and plain `http://` only to
/// loopback addresses (tests, a sidecar): keys fetched in the clear from
/// anywhere else could be forged.
pub fn for_provider(ca_pem: Option<&str>) -> Result<HttpClient, ClientSetupError> {
    let system = Path::new(SYSTEM_CA_BUNDLE);
    let roots = root_store(
        system.exists().then_some(system),
        ca_pem.unwrap_or_default().as_bytes(),
    )?;
    let mut options = ClientOptions::new(roots);
    options.allow_plain_http_to_loopback = true;
    Ok(HttpClient::new(options)?)
}

/// What came back: the status, the headers callers need, the body.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status (never 3xx: those are [`FetchError::Redirected`]).
    pub status: StatusCode,
    /// The `Cache-Control` header, several joined with `, `.
    pub cache_control: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `Link` header (RFC 8288), for paged APIs such as GitHub's.
    pub link: Option<String>,
    /// The body, at most [`ClientOptions::max_body_bytes`] long.
    pub body: Bytes,
}

impl Response {
    /// The response when its status is 2xx, else [`FetchError::Status`].
    pub fn success(self) -> Result<Self, FetchError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(FetchError::Status {
                status: self.status.as_u16(),
            })
        }
    }
}

/// The client. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpClient {
    tls: Arc<rustls::ClientConfig>,
    options: ClientOptions,
}

/// Where a URL points, split for connecting.
struct Target {
    tls: bool,
    /// The host without IPv6 brackets: for DNS and SNI.
    host: String,
    port: u16,
    /// The authority as written: for the Host header.
    authority: String,
    path_and_query: String,
}

impl HttpClient {
    /// A client with `options`. Fails only if rustls refuses the protocol
    /// versions for the provider.
    pub fn new(options: ClientOptions) -> Result<Self, rustls::Error> {
        let mut tls = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_root_certificates(options.roots.clone())
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            tls: Arc::new(tls),
            options,
        })
    }

    /// GET `url`.
    pub async fn get(&self, url: &str) -> Result<Response, FetchError> {
        self.send(Method::GET, url, None, None).await
    }

    /// GET `url` with `Authorization: Bearer <token>` (GitHub's REST API).
    pub async fn get_with_bearer(&self, url: &str, token: &str) -> Result<Response, FetchError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| FetchError::BadUrl("token is not a header value"))?;
        auth.set_sensitive(true);
        self.send(Method::GET, url, None, Some(auth)).await
    }

    /// POST `form` to `url` as `application/x-www-form-urlencoded`, with
    /// HTTP Basic authentication when `basic` is `(user, password)`.
    pub async fn post_form(
        &self,
        url: &str,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> Result<Response, FetchError> {
        let body = Bytes::from(form_urlencode(form));
        let auth = basic.map(|(user, password)| basic_auth(user, password));
        self.send(Method::POST, url, Some(body), auth).await
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        form: Option<Bytes>,
        auth: Option<HeaderValue>,
    ) -> Result<Response, FetchError> {
        let target = self.target(url)?;
        let limit = self.options.timeout;
        tokio::time::timeout(limit, self.exchange(method, target, form, auth))
            .await
            .map_err(|_| FetchError::Timeout(limit))?
    }

    fn target(&self, url: &str) -> Result<Target, FetchError> {
        let uri: Uri = url.parse().map_err(|_| FetchError::BadUrl("not a URI"))?;
        let loopback = uri.host().is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") if self.options.allow_plain_http => false,
            Some("http") if self.options.allow_plain_http_to_loopback && loopback => false,
            Some("http") => return Err(FetchError::PlainHttp),
            Some(_) => return Err(FetchError::BadUrl("scheme is not https")),
            None => return Err(FetchError::BadUrl("not an absolute URL")),
        };
        let authority = uri
            .authority()
            .ok_or(FetchError::BadUrl("no host"))?
            .clone();
        if authority.as_str().contains('@') {
            return Err(FetchError::BadUrl("credentials in the URL are not allowed"));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(FetchError::BadUrl("no host"));
        }
        Ok(Target {
            tls,
            host: host.to_string(),
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.as_str().to_string(),
            path_and_query: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
        })
    }

    async fn exchange(
        &self,
        method: Method,
        target: Target,
        form: Option<Bytes>,
        auth: Option<HeaderValue>,
    ) -> Result<Response, FetchError> {
        let mut request = Request::builder()
            .method(method)
            .uri(target.path_and_query.as_str())
            .header(header::HOST, target.authority.as_str())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("tlsward/", env!("CARGO_PKG_VERSION")),
            );
        if form.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let request = request
            .body(Full::new(form.unwrap_or_default()))
            .map_err(|_| FetchError::BadUrl("not a valid request target"))?;

        let max = self.options.max_body_bytes;
        let connect_limit = self.options.connect_timeout;
        // One deadline for the TCP connect and the TLS handshake together.
        let deadline = tokio::time::Instant::now() + connect_limit;
        let authority = || format!("{}:{}", target.host, target.port);
        let tcp = tokio::time::timeout_at(
            deadline,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .map_err(|_| FetchError::Timeout(connect_limit))?
        .map_err(|source| FetchError::Connect {
            authority: authority(),
            source,
        })?;
        let _ = tcp.set_nodelay(true);
        if !target.tls {
            return over(tcp, request, max).await;
        }
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| FetchError::BadUrl("host is not a valid TLS server name"))?;
        let tls = tokio::time::timeout_at(
            deadline,
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp),
        )
        .await
        .map_err(|_| FetchError::Timeout(connect_limit))?
        .map_err(|source| FetchError::Tls {
            authority: authority(),
            source,
        })?;
        over(tls, request, max).await
    }
}

/// Aborts the connection task when the exchange ends or is dropped (on
/// timeout), which closes the socket.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One request on a fresh connection; reads at most `max` body bytes.
async fn over<S>(io: S, request: Request<Full<Bytes>>, max: usize) -> Result<Response, FetchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let _driver = AbortOnDrop(tokio::spawn(async move {
        // Its errors surface through the request and body futures.
        let _ = conn.await;
    }));
    let response = sender.send_request(request).await?;
    let status = response.status();
    if status.is_redirection() {
        return Err(FetchError::Redirected {
            status: status.as_u16(),
        });
    }
    let headers = response.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max as u64) {
        return Err(FetchError::TooLarge { limit: max });
    }
    let cache_control = joined(headers.get_all(header::CACHE_CONTROL).iter());
    let content_type = joined(headers.get_all(header::CONTENT_TYPE).iter());
    let link = joined(headers.get_all(header::LINK).iter());
    let mut body = response.into_body();
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.len() + data.len() > max {
                return Err(FetchError::TooLarge { limit: max });
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Response {
        status,
        cache_control,
        content_type,
        link,
        body: buf.freeze(),
    })
}

/// The `rel="next"` target of a `Link` header (RFC 8288), if any.
pub fn next_link(link: &str) -> Option<&str> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p.eq_ignore_ascii_case("rel=\"next\"") || p.eq_ignore_ascii_case("rel=next")
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then_some(target)
    })
}

/// Header values that are text, joined with `, `; `None` when there is none.
fn joined<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Option<String> {
    let parts: Vec<&str> = values.filter_map(|v| v.to_str().ok()).collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `application/x-www-form-urlencoded` (WHATWG URL §5.2): unreserved bytes
/// as they are, space as `+`, everything else `%XX`.
pub fn form_urlencode(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_component(name, &mut out);
        out.push('=');
        encode_component(value, &mut out);
    }
    out
}

fn encode_component(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 15)] as char);
            }
        }
    }
}

/// `Authorization: Basic`, with both parts form-encoded first as RFC 6749
/// §2.3.1 asks of client credentials. Marked sensitive so hyper never
/// indexes or prints it.
fn basic_auth(user: &str, password: &str) -> HeaderValue {
    use base64::Engine as _;
    let mut plain = String::new();
    encode_component(user, &mut plain);
    plain.push(':');
    encode_component(password, &mut plain);
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain);
    // Base64 is always a valid header value.
    let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

// ---------------------------------------------------------------------------
// Discovery (OpenID Connect Discovery 1.0)
// ---------------------------------------------------------------------------

/// What this proxy uses from an OpenID Provider's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// The issuer, equal to the configured one.
    pub issuer: String,
    /// Where the signing keys are.
    pub jwks_uri: String,
    /// Where browsers log in (absent from API-only providers).
    pub authorization_endpoint: Option<String>,
    /// Where codes and refresh tokens are exchanged.
    pub token_endpoint: Option<String>,
    /// The UserInfo endpoint.
    pub userinfo_endpoint: Option<String>,
    /// RP-initiated logout.
    pub end_session_endpoint: Option<String>,
    /// The `alg` values the provider may sign ID tokens with.
    pub id_token_signing_alg_values_supported: Vec<String>,
    /// RFC 9207: the provider puts `iss` in authorization responses, so a
    /// response without it is refused.
    pub authorization_response_iss_parameter_supported: bool,
}

/// Why a discovery document was not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The document could not be fetched.
    #[error("fetching the OpenID configuration: {0}")]
    Fetch(#[from] FetchError),
    /// The document is not a provider configuration.
    #[error("not an OpenID provider configuration: {0}")]
    Invalid(String),
    /// The document names another issuer (Discovery §4.3): it must not be
    /// used, or one provider could speak for another.
    #[error("the configuration says issuer {found:?}, expected exactly {expected:?}")]
    IssuerMismatch {
        /// The configured issuer.
        expected: String,
        /// What the document says.
        found: String,
    },
    /// An endpoint is not an absolute http(s) URL.
    #[error("{field} is not an absolute http(s) URL")]
    BadEndpoint {
        /// The field.
        field: &'static str,
    },
}

#[derive(Deserialize)]
struct RawDiscovery {
    issuer: String,
    jwks_uri: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    userinfo_endpoint: Option<String>,
    end_session_endpoint: Option<String>,
    #[serde(default)]
    id_token_signing_alg_values_supported: Vec<String>,
    #[serde(default)]
    authorization_response_iss_parameter_supported: bool,
}

/// Where `issuer`'s configuration is: one terminating `/` removed, then
/// `/.well-known/openid-configuration` appended (Discovery §4).
pub fn discovery_url(issuer: &str) -> String {
    let base = issuer.strip_suffix('/').unwrap_or(issuer);
    format!("{base}/.well-known/openid-configuration")
}

/// Reads a provider configuration and checks that it is `expected_issuer`'s,
/// compared exactly (no trailing-slash or case folding). Pure.
pub fn parse_discovery(bytes: &[u8], expected_issuer: &str) -> Result<Discovery, DiscoveryError> {
    let raw: RawDiscovery =
        serde_json::from_slice(bytes).map_err(|e| DiscoveryError::Invalid(e.to_string()))?;
    if raw.issuer != expected_issuer {
        return Err(DiscoveryError::IssuerMismatch {
            expected: expected_issuer.to_string(),
            found: raw.issuer,
        });
    }
    check_endpoint("jwks_uri", Some(&raw.jwks_uri))?;
    check_endpoint(
        "authorization_endpoint",
        raw.authorization_endpoint.as_deref(),
    )?;
    check_endpoint("token_endpoint", raw.token_endpoint.as_deref())?;
    check_endpoint("userinfo_endpoint", raw.userinfo_endpoint.as_deref())?;
    check_endpoint("end_session_endpoint", raw.end_session_endpoint.as_deref())?;
    Ok(Discovery {
        issuer: raw.issuer,
        jwks_uri: raw.jwks_uri,
        authorization_endpoint: raw.authorization_endpoint,
        token_endpoint: raw.token_endpoint,
        userinfo_endpoint: raw.userinfo_endpoint,
        end_session_endpoint: raw.end_session_endpoint,
        id_token_signing_alg_values_supported: raw.id_token_signing_alg_values_supported,
        authorization_response_iss_parameter_supported: raw
            .authorization_response_iss_parameter_supported,
    })
}

fn check_endpoint(field: &'static str, value: Option<&str>) -> Result<(), DiscoveryError> {
    let Some(value) = value else { return Ok(()) };
    let ok = value
        .parse::<Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("https" | "http")) && u.authority().is_some());
    if ok {
        Ok(())
    } else {
        Err(DiscoveryError::BadEndpoint { field })
    }
}

/// Fetches and checks `issuer`'s provider configuration.
pub async fn fetch_discovery(
    client: &HttpClient,
    issuer: &str,
) -> Result<Discovery, DiscoveryError> {
    let response = client.get(&discovery_url(issuer)).await?.success()?;
    parse_discovery(&response.body, issuer)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use base64::Engine as _;

    use super::*;
    use crate::oidc::fixtures::{Idp, Mode};

    #[tokio::test]
    async fn discovery_reads_the_provider_configuration() {
        let idp = Idp::start().await;
        let d = fetch_discovery(&idp.client(), &idp.issuer).await.unwrap();
        assert_eq!(d.issuer, idp.issuer);
        assert_eq!(d.jwks_uri, idp.jwks_uri());
        assert_eq!(
            d.authorization_endpoint,
            Some(format!("{}/authorize", idp.issuer))
        );
        assert_eq!(d.token_endpoint, Some(format!("{}/token", idp.issuer)));
        assert_eq!(
            d.userinfo_endpoint,
            Some(format!("{}/userinfo", idp.issuer))
        );
        assert_eq!(
            d.end_session_endpoint,
            Some(format!("{}/logout", idp.issuer))
        );
        assert_eq!(d.id_token_signing_alg_values_supported, ["RS256", "ES256"]);
        let seen = idp.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].path, "/.well-known/openid-configuration");
        let host = seen[0].headers.get(header::HOST).unwrap();
        assert_eq!(host, idp.issuer.trim_start_matches("https://"));
    }

    #[tokio::test]
    async fn discovery_refuses_another_issuer() {
        let idp = Idp::start().await;
        // The configured issuer with a trailing slash is another issuer:
        // the document is fetched (one slash dropped) but not accepted.
        let with_slash = format!("{}/", idp.issuer);
        let err = fetch_discovery(&idp.client(), &with_slash)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, DiscoveryError::IssuerMismatch { expected, found }
                if *expected == with_slash && *found == idp.issuer),
            "{err:?}"
        );
        assert_eq!(idp.discovery_requests(), 1);

        idp.set_issuer_in_doc("https://evil.example");
        let err = fetch_discovery(&idp.client(), &idp.issuer)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DiscoveryError::IssuerMismatch { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn discovery_url_drops_one_trailing_slash() {
        assert_eq!(
            discovery_url("https://idp.example"),
            "https://idp.example/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://idp.example/realms/a/"),
            "https://idp.example/realms/a/.well-known/openid-configuration"
        );
    }

    #[test]
    fn discovery_documents_that_are_refused() {
        let iss = "https://idp.example";
        let no_jwks = br#"{"issuer":"https://idp.example"}"#;
        assert!(matches!(
            parse_discovery(no_jwks, iss),
            Err(DiscoveryError::Invalid(_))
        ));
        let relative = br#"{"issuer":"https://idp.example","jwks_uri":"/keys"}"#;
        assert!(matches!(
            parse_discovery(relative, iss),
            Err(DiscoveryError::BadEndpoint { field: "jwks_uri" })
        ));
        let bad_token = br#"{"issuer":"https://idp.example","jwks_uri":"https://idp.example/k",
            "token_endpoint":"javascript:alert(1)"}"#;
        assert!(matches!(
            parse_discovery(bad_token, iss),
            Err(DiscoveryError::BadEndpoint {
                field: "token_endpoint"
            })
        ));
        let minimal = br#"{"issuer":"https://idp.example","jwks_uri":"https://idp.example/k"}"#;
        let d = parse_discovery(minimal, iss).unwrap();
        assert_eq!(d.token_endpoint, None);
        assert!(d.id_token_signing_alg_values_supported.is_empty());
    }

    #[tokio::test]
    async fn a_redirect_is_not_followed() {
        let idp = Idp::start().await;
        idp.set_mode(Mode::Redirect);
        let err = idp.client().get(&idp.jwks_uri()).await.unwrap_err();
        assert!(
            matches!(err, FetchError::Redirected { status: 302 }),
            "{err:?}"
        );
        assert_eq!(idp.requests(), 1, "the Location must not be fetched");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused() {
        let idp = Idp::start().await;
        for mode in [Mode::Huge, Mode::HugeChunked] {
            idp.set_mode(mode);
            let started = Instant::now();
            let err = idp.client().get(&idp.jwks_uri()).await.unwrap_err();
            assert!(
                matches!(
                    err,
                    FetchError::TooLarge {
                        limit: DEFAULT_MAX_BODY_BYTES
                    }
                ),
                "{mode:?}: {err:?}"
            );
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        // Under the limit is fine.
        idp.set_mode(Mode::Normal);
        let r = idp.client().get(&idp.jwks_uri()).await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.starts_with(b"{\"keys\""));
    }

    #[tokio::test]
    async fn a_stalled_server_times_out() {
        let idp = Idp::start().await;
        let mut options = idp.options();
        options.timeout = Duration::from_millis(200);
        let client = HttpClient::new(options).unwrap();
        // Headers sent, body never finished.
        idp.set_mode(Mode::Stall);
        let started = Instant::now();
        let err = client.get(&idp.jwks_uri()).await.unwrap_err();
        assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
        // No answer at all.
        idp.set_mode(Mode::Normal);
        idp.set_delay(Duration::from_secs(30));
        let err = client.get(&idp.jwks_uri()).await.unwrap_err();
        assert!(matches!(err, FetchError::Timeout(_)), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn an_untrusted_certificate_is_refused() {
        let idp = Idp::start().await;
        let other = Idp::start().await;
        let client = HttpClient::new(other.options()).unwrap();
        let err = client.get(&idp.jwks_uri()).await.unwrap_err();
        assert!(matches!(err, FetchError::Tls { .. }), "{err:?}");
        assert_eq!(idp.requests(), 0);
    }

    #[tokio::test]
    async fn urls_the_client_refuses() {
        let idp = Idp::start().await;
        let client = idp.client();
        let http = idp.issuer.replace("https://", "http://");
        assert!(matches!(
            client.get(&http).await,
            Err(FetchError::PlainHttp)
        ));
        for url in ["/jwks", "ftp://idp.example/x", "not a url"] {
            let err = client.get(url).await.unwrap_err();
            assert!(matches!(err, FetchError::BadUrl(_)), "{url}: {err:?}");
        }
        let err = client
            .get("https://admin:hunter2@idp.example/")
            .await
            .unwrap_err();
        assert!(matches!(err, FetchError::BadUrl(_)), "{err:?}");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn plain_http_when_enabled() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = hyper::service::service_fn(|_req| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(
                    "hi",
                ))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
        let mut options = ClientOptions::new(root_store(None, Ca::pem().as_bytes()).unwrap());
        options.allow_plain_http = true;
        let r = HttpClient::new(options)
            .unwrap()
            .get(&format!("http://{addr}/"))
            .await
            .unwrap();
        assert_eq!(&r.body[..], b"hi");
    }

    /// Any CA: plain HTTP needs no trust, but the store must not be empty.
    struct Ca;
    impl Ca {
        fn pem() -> String {
            rcgen::generate_simple_self_signed(vec!["ca.test".to_string()])
                .unwrap()
                .cert
                .pem()
        }
    }

    #[tokio::test]
    async fn post_form_sends_the_form_and_basic_credentials() {
        let idp = Idp::start().await;
        let url = format!("{}/token", idp.issuer);
        let r = idp
            .client()
            .post_form(
                &url,
                &[("grant_type", "authorization_code"), ("code", "a b&c=d/é")],
                Some(("my client", "s:cret")),
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        assert_eq!(&r.body[..], br#"{"access_token":"t"}"#);
        let seen = idp.seen().pop().unwrap();
        assert_eq!(seen.method, "POST");
        assert_eq!(
            &seen.body[..],
            b"grant_type=authorization_code&code=a+b%26c%3Dd%2F%C3%A9"
        );
        assert_eq!(
            seen.headers.get(header::CONTENT_TYPE).unwrap(),
            "application/x-www-form-urlencoded"
        );
        let auth = seen
            .headers
            .get(header::AUTHORIZATION)
            .unwrap()
            .to_str()
            .unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.strip_prefix("Basic ").unwrap())
            .unwrap();
        assert_eq!(decoded, b"my+client:s%3Acret");

        // An error status is an answer (the token endpoint's JSON error
        // is in the body); `success` turns it into an error.
        let r = idp
            .client()
            .post_form(&url, &[("a", "b")], None)
            .await
            .unwrap();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(matches!(
            r.success(),
            Err(FetchError::Status { status: 400 })
        ));
    }

    #[test]
    fn roots_from_missing_system_bundle_and_extra_pem() {
        let missing = Path::new("/nonexistent/ca-certificates.crt");
        assert!(matches!(
            root_store(Some(missing), b""),
            Err(RootsError::Empty)
        ));
        assert!(matches!(
            root_store(Some(missing), b"not pem"),
            Err(RootsError::NoCertificate)
        ));
        let roots = root_store(Some(missing), Ca::pem().as_bytes()).unwrap();
        assert_eq!(roots.len(), 1);
        // A malformed block next to a good one is an error, not skipped.
        let broken = format!(
            "{}-----BEGIN CERTIFICATE-----\n!!not base64!!\n-----END CERTIFICATE-----\n",
            Ca::pem()
        );
        let err = root_store(Some(missing), broken.as_bytes()).unwrap_err();
        assert!(matches!(err, RootsError::BadPem { block: 2, .. }), "{err}");
        assert!(err.to_string().contains("block 2"), "{err}");
    }
}
