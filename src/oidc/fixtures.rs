//! A test identity provider for `client` and `keys`: real HTTPS (a CA and
//! a serving certificate made at test time), a discovery document, a key set
//! whose kids and `Cache-Control` the test changes, request counters, and
//! ways to misbehave (redirect, oversized bodies, stall, bad JSON, down).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;

use crate::oidc::client::{ClientOptions, HttpClient, root_store};

/// How the key set path (`/jwks`) answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The key set.
    Normal,
    /// 302 to `/elsewhere` on the same server.
    Redirect,
    /// 2 MiB with a Content-Length.
    Huge,
    /// 2 MiB chunked, no length.
    HugeChunked,
    /// Never answers.
    Stall,
    /// Not JSON.
    BadJson,
    /// `{"keys":[]}`.
    EmptySet,
    /// 500.
    ServerError,
}

/// A request the server received.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub method: String,
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

struct State {
    issuer_in_doc: Mutex<String>,
    kids: Mutex<Vec<String>>,
    /// Real JWKs served in place of the kid-only placeholders.
    keys: Mutex<Option<Vec<serde_json::Value>>>,
    cache_control: Mutex<Option<String>>,
    mode: Mutex<Mode>,
    delay: Mutex<Duration>,
    jwks: AtomicUsize,
    discovery: AtomicUsize,
    all: AtomicUsize,
    seen: Mutex<Vec<Seen>>,
}

pub(crate) struct Idp {
    pub issuer: String,
    pub ca_pem: String,
    state: Arc<State>,
    accept: Option<tokio::task::JoinHandle<()>>,
}

impl Idp {
    /// Listens on 127.0.0.1 with a certificate for `127.0.0.1` and
    /// `localhost`, serving the kid `k1`.
    pub async fn start() -> Idp {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(leaf.der().to_vec())],
                PrivateKeyDer::from_pem_slice(leaf_key.serialize_pem().as_bytes()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let issuer = format!("https://{addr}");
        let state = Arc::new(State {
            issuer_in_doc: Mutex::new(issuer.clone()),
            kids: Mutex::new(vec!["k1".to_string()]),
            keys: Mutex::new(None),
            cache_control: Mutex::new(None),
            mode: Mutex::new(Mode::Normal),
            delay: Mutex::new(Duration::ZERO),
            jwks: AtomicUsize::new(0),
            discovery: AtomicUsize::new(0),
            all: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        });
        let served = state.clone();
        let base = issuer.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let state = served.clone();
                let base = base.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        answer(state.clone(), base.clone(), req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Idp {
            issuer,
            ca_pem: ca.pem(),
            state,
            accept: Some(accept),
        }
    }

    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// Client options trusting this server's CA, with test-sized timeouts.
    pub fn options(&self) -> ClientOptions {
        let mut o = ClientOptions::new(root_store(None, self.ca_pem.as_bytes()).unwrap());
        o.connect_timeout = Duration::from_millis(500);
        o.timeout = Duration::from_millis(500);
        o
    }

    pub fn client(&self) -> HttpClient {
        HttpClient::new(self.options()).unwrap()
    }

    pub fn set_kids(&self, kids: &[&str]) {
        *self.state.kids.lock().unwrap() = kids.iter().map(|k| k.to_string()).collect();
    }

    /// Serves these JWKs (real public keys) instead of `{kid, kty}` stubs.
    pub fn set_keys(&self, keys: Vec<serde_json::Value>) {
        *self.state.keys.lock().unwrap() = Some(keys);
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.state.cache_control.lock().unwrap() = value.map(str::to_string);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
    }

    /// Delay before every key set answer.
    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    pub fn set_issuer_in_doc(&self, issuer: &str) {
        *self.state.issuer_in_doc.lock().unwrap() = issuer.to_string();
    }

    /// Requests for `/jwks`.
    pub fn jwks_requests(&self) -> usize {
        self.state.jwks.load(Ordering::SeqCst)
    }

    /// Requests for the discovery document.
    pub fn discovery_requests(&self) -> usize {
        self.state.discovery.load(Ordering::SeqCst)
    }

    /// Requests for any path.
    pub fn requests(&self) -> usize {
        self.state.all.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Stops listening: new connections are refused.
    pub async fn down(&mut self) {
        if let Some(accept) = self.accept.take() {
            accept.abort();
            let _ = accept.await;
        }
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        if let Some(accept) = &self.accept {
            accept.abort();
        }
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

async fn answer(
    state: Arc<State>,
    base: String,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    state.all.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    state.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        headers: parts.headers.clone(),
        body,
    });
    let response = match path.as_str() {
        "/.well-known/openid-configuration" => {
            state.discovery.fetch_add(1, Ordering::SeqCst);
            let doc = json!({
                "issuer": *state.issuer_in_doc.lock().unwrap(),
                "jwks_uri": format!("{base}/jwks"),
                "authorization_endpoint": format!("{base}/authorize"),
                "token_endpoint": format!("{base}/token"),
                "userinfo_endpoint": format!("{base}/userinfo"),
                "end_session_endpoint": format!("{base}/logout"),
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                "response_types_supported": ["code"],
            });
            json_response(StatusCode::OK, doc.to_string(), None)
        }
        "/jwks" => {
            state.jwks.fetch_add(1, Ordering::SeqCst);
            let delay = *state.delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mode = *state.mode.lock().unwrap();
            jwks_response(&state, mode)
        }
        "/token" => {
            let status = if parts.headers.contains_key(hyper::header::AUTHORIZATION) {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            json_response(status, r#"{"access_token":"t"}"#.to_string(), None)
        }
        _ => json_response(StatusCode::NOT_FOUND, "{}".to_string(), None),
    };
    Ok(response)
}

fn json_response(
    status: StatusCode,
    body: String,
    cache_control: Option<String>,
) -> Response<Body> {
    let mut r = Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(cc) = cache_control {
        r = r.header(hyper::header::CACHE_CONTROL, cc);
    }
    r.body(full(body)).unwrap()
}

fn jwks_response(state: &State, mode: Mode) -> Response<Body> {
    const TWO_MIB: usize = 2 << 20;
    match mode {
        Mode::Normal => {
            let real = state.keys.lock().unwrap().clone();
            let keys: Vec<_> = real.unwrap_or_else(|| {
                state
                    .kids
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|kid| json!({"kid": kid, "kty": "EC"}))
                    .collect()
            });
            let cc = state.cache_control.lock().unwrap().clone();
            json_response(StatusCode::OK, json!({ "keys": keys }).to_string(), cc)
        }
        Mode::Redirect => Response::builder()
            .status(StatusCode::FOUND)
            .header(hyper::header::LOCATION, "/elsewhere")
            .body(full(""))
            .unwrap(),
        Mode::Huge => json_response(StatusCode::OK, " ".repeat(TWO_MIB), None),
        Mode::HugeChunked => {
            let chunk = Bytes::from(vec![b' '; 64 << 10]);
            let frames = (0..TWO_MIB / chunk.len())
                .map(move |_| Ok::<_, Infallible>(Frame::data(chunk.clone())));
            Response::builder()
                .status(StatusCode::OK)
                .body(StreamBody::new(futures::stream::iter(frames)).boxed())
                .unwrap()
        }
        Mode::Stall => {
            let never = futures::stream::pending::<Result<Frame<Bytes>, Infallible>>();
            Response::builder()
                .status(StatusCode::OK)
                .body(StreamBody::new(never).boxed())
                .unwrap()
        }
        Mode::BadJson => json_response(StatusCode::OK, "<html>".to_string(), None),
        Mode::EmptySet => json_response(StatusCode::OK, r#"{"keys":[]}"#.to_string(), None),
        Mode::ServerError => {
            json_response(StatusCode::INTERNAL_SERVER_ERROR, "{}".to_string(), None)
        }
    }
}
