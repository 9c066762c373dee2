//! The world every OIDC test starts: an rcgen PKI, the echo upstream, the
//! proxy (first with open hosts, so its port is known), then the provider
//! (whose web client registers the proxy's callback, logout and
//! back-channel addresses), then the policies written into the proxy's
//! manifests directory, which it reloads.
//!
//! Hosts and their policies:
//! - [`API`] `api`: bearer tokens for `https://api.test`, scope
//!   `inventory.read`, group `inventory-readers`, claim headers; client
//!   certificates optional; binding `IfPresent` (the default).
//! - [`FWD`] `fwd`: bearer tokens, any scope, `forwardAuthorization`,
//!   `requireAccessTokenType`.
//! - [`BOUND`] `bound`: bearer tokens, `certificateBinding: Required`.
//! - [`JOIN`] `join`: bearer tokens whose `workload` claim must be a DNS
//!   SAN of the client certificate (`identityJoins`).
//! - [`APP`] and [`LOCAL`] `web`: browser login with the provider's web
//!   client, public paths `/public` (prefix) and `/healthz` (exact); client
//!   certificates optional, so sessions are bound to them. `localhost`
//!   carries the back-channel logout endpoint (the provider can resolve it).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::oidc_provider::{API_RESOURCE, OidcProvider, OidcProviderConfig, jwt_parts};
use crate::support::*;

pub const API: &str = "api.example.test";
pub const FWD: &str = "fwd.example.test";
pub const BOUND: &str = "bound.example.test";
pub const JOIN: &str = "join.example.test";
pub const APP: &str = "app.example.test";
pub const LOCAL: &str = "localhost";
/// Login whose claim rule (group `admins`) the test user fails.
pub const DENY: &str = "deny.example.test";

/// The headers the `api` policy fills from token claims.
pub const SUBJECT_HEADER: &str = "X-Auth-Subject";
pub const GROUPS_HEADER: &str = "X-Auth-Groups";
pub const EMAIL_HEADER: &str = "X-Auth-Email";
/// The login's access-token header for the upstream.
pub const ACCESS_TOKEN_HEADER: &str = "X-Auth-Request-Access-Token";

/// Unix seconds now.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// 32 fresh bytes, base64: a session key.
pub fn session_key(seed: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let bytes = Sha256::digest(format!("{seed}-{nanos}-{}", std::process::id()));
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A change to the provider's configuration.
pub type ProviderTweak = Box<dyn FnOnce(&mut OidcProviderConfig)>;

/// What a test changes in the standard world.
#[derive(Default)]
pub struct Options {
    /// Changes to the provider's configuration (after the proxy's
    /// addresses are filled in).
    pub provider: Option<ProviderTweak>,
    /// Start a second proxy with the same hosts but another session key
    /// (same key id): its cookies are foreign to the first.
    pub second_proxy: bool,
    /// `spec.login.minimalSession`.
    pub minimal_session: bool,
}

pub struct OidcWorld {
    /// None once a test stopped it.
    pub op: Option<OidcProvider>,
    pub issuer: String,
    pub op_ca_pem: String,
    pub proxy: Proxy,
    pub proxy2: Option<Proxy>,
    pub upstream: Upstream,
    pub server_ca: Ca,
    pub server_ca_path: PathBuf,
    pub client_ca: Ca,
    pub cert_a: Leaf,
    pub cert_b: Leaf,
    pub files_a: ClientFiles,
    pub files_b: ClientFiles,
    pki: tempfile::TempDir,
    config: tempfile::TempDir,
    config2: Option<tempfile::TempDir>,
}

fn base_manifests(dir: &Path, server: &Leaf, upstream: &Upstream, policies: bool) {
    let root: &[(&str, &str, &str)] = &[("Prefix", "/", "echo")];
    let rule = |host| Rule { host, paths: root };
    let pick = |p: &'static str| policies.then_some(p);
    write_json(
        dir,
        "app.json",
        &[
            tls_secret("server-tls", &server.cert_pem, &server.key_pem),
            service("echo", &[upstream.addr]),
            ingress("api", pick("api"), "server-tls", &[rule(API)]),
            ingress("fwd", pick("fwd"), "server-tls", &[rule(FWD)]),
            ingress("bound", pick("bound"), "server-tls", &[rule(BOUND)]),
            ingress("join", pick("join"), "server-tls", &[rule(JOIN)]),
            ingress("web", pick("web"), "server-tls", &[rule(APP), rule(LOCAL)]),
            ingress("deny", pick("deny"), "server-tls", &[rule(DENY)]),
        ],
    );
}

/// Writes the login's Secrets: the client secret and the session keys.
fn login_secrets(dir: &Path, session_keys: &[(&str, &str)]) {
    write_json(
        dir,
        "secrets.json",
        &[
            opaque_secret("web-client", &[("client-secret", "web-client-secret")]),
            opaque_secret("web-session", session_keys),
        ],
    );
}

fn policies(dir: &Path, issuer: &str, op_ca: &str, client_ca: &str, session: &str, minimal: bool) {
    let anchors = inline(&[client_ca]);
    let issuer_entry = json!({
        "issuer": issuer,
        "audiences": [API_RESOURCE],
        "ca": {"inline": op_ca},
    });
    login_secrets(dir, &[("k1", session)]);
    write_yaml(
        dir,
        "policies.yaml",
        &[
            policy(
                "api",
                json!({
                    "mode": "Optional",
                    "trustAnchors": anchors,
                    "tokens": {
                        "issuers": [issuer_entry],
                        "scopes": ["inventory.read"],
                        "claims": [{"claim": "groups", "contains": "inventory-readers"}],
                        "claimHeaders": [
                            {"claim": "sub", "header": SUBJECT_HEADER},
                            {"claim": "groups", "header": GROUPS_HEADER},
                            {"claim": "email", "header": EMAIL_HEADER},
                        ],
                    },
                }),
            ),
            policy(
                "fwd",
                json!({
                    "tokens": {
                        "issuers": [issuer_entry],
                        "forwardAuthorization": true,
                        "requireAccessTokenType": true,
                        "claimHeaders": [{"claim": "sub", "header": SUBJECT_HEADER}],
                    },
                }),
            ),
            policy(
                "bound",
                json!({
                    "mode": "Optional",
                    "trustAnchors": anchors,
                    "tokens": {
                        "issuers": [issuer_entry],
                        "certificateBinding": "Required",
                    },
                }),
            ),
            policy(
                "join",
                json!({
                    "mode": "Optional",
                    "trustAnchors": anchors,
                    "tokens": {
                        "issuers": [issuer_entry],
                        "identityJoins": [{"certificate": "SANDNS", "claim": "workload"}],
                    },
                }),
            ),
            policy(
                "web",
                json!({
                    "mode": "Optional",
                    "trustAnchors": anchors,
                    "login": {
                        "issuer": issuer,
                        "clientId": "web-client",
                        "clientSecretRef": {"name": "web-client"},
                        "sessionSecretRef": {"name": "web-session"},
                        "scopes": ["openid", "email", "profile", "groups"],
                        "postLogoutPath": "/logged-out",
                        "headers": {"accessToken": ACCESS_TOKEN_HEADER},
                        "ca": {"inline": op_ca},
                        "minimalSession": minimal,
                    },
                    "publicPaths": [{"prefix": "/public"}, {"exact": "/healthz"}],
                }),
            ),
            policy(
                "deny",
                json!({
                    "login": {
                        "issuer": issuer,
                        "clientId": "web-client",
                        "clientSecretRef": {"name": "web-client"},
                        "sessionSecretRef": {"name": "web-session"},
                        "scopes": ["openid", "email", "profile", "groups"],
                        "claims": [{"claim": "groups", "contains": "admins"}],
                        "ca": {"inline": op_ca},
                    },
                }),
            ),
        ],
    );
}

impl OidcWorld {
    /// The standard world, or None when the provider cannot run here (see
    /// `provider_available`; under CI=true that panics instead).
    pub fn start(mut opts: Options) -> Option<OidcWorld> {
        if !crate::oidc_provider::provider_available() {
            return None;
        }
        let server_ca = Ca::new("tlsward oidc test server CA");
        let client_ca = Ca::new("tlsward oidc test client CA");
        let server = server_ca.server(&["*.example.test", LOCAL], "proxy", 2035);
        let cert_a = client_ca.client(ClientSpec::named("workload-a").dns("a.clients.test"));
        let cert_b = client_ca.client(ClientSpec::named("workload-b").dns("b.clients.test"));
        let pki = tempfile::tempdir().unwrap();
        let server_ca_path = pki.path().join("server-ca.crt");
        std::fs::write(&server_ca_path, server_ca.pem()).unwrap();
        let files_a = cert_a.write(pki.path(), "a");
        let files_b = cert_b.write(pki.path(), "b");

        let upstream = Upstream::start("echo");
        let config = tempfile::tempdir().unwrap();
        base_manifests(config.path(), &server, &upstream, false);
        let proxy = Proxy::start(config.path(), &[]);
        let (config2, proxy2) = if opts.second_proxy {
            let c = tempfile::tempdir().unwrap();
            base_manifests(c.path(), &server, &upstream, false);
            let p = Proxy::start(c.path(), &[]);
            (Some(c), Some(p))
        } else {
            (None, None)
        };

        let mut ports = vec![proxy.https];
        ports.extend(proxy2.iter().map(|p| p.https));
        let mut cfg = OidcProviderConfig {
            redirect_uris: ports
                .iter()
                .flat_map(|p| {
                    [
                        format!("https://{APP}:{p}/.tlsward/callback"),
                        format!("https://{LOCAL}:{p}/.tlsward/callback"),
                        format!("https://{DENY}:{p}/.tlsward/callback"),
                    ]
                })
                .collect(),
            post_logout_redirect_uris: ports
                .iter()
                .flat_map(|p| {
                    [
                        format!("https://{APP}:{p}/logged-out"),
                        format!("https://{LOCAL}:{p}/logged-out"),
                    ]
                })
                .collect(),
            backchannel_logout_uri: Some(format!(
                "https://{LOCAL}:{}/.tlsward/backchannel-logout",
                proxy.https
            )),
            trust_ca_pem: Some(server_ca.pem()),
            ..Default::default()
        };
        if let Some(f) = opts.provider.take() {
            f(&mut cfg);
        }
        let op = OidcProvider::start(cfg);
        let issuer = op.issuer.clone();
        let op_ca_pem = op.ca_pem.clone();

        policies(
            config.path(),
            &issuer,
            &op_ca_pem,
            &client_ca.pem(),
            &session_key("one"),
            opts.minimal_session,
        );
        if let Some(c) = &config2 {
            policies(
                c.path(),
                &issuer,
                &op_ca_pem,
                &client_ca.pem(),
                &session_key("two"),
                opts.minimal_session,
            );
        }
        base_manifests(config.path(), &server, &upstream, true);
        if let Some(c) = &config2 {
            base_manifests(c.path(), &server, &upstream, true);
        }
        let w = OidcWorld {
            op: Some(op),
            issuer,
            op_ca_pem,
            proxy,
            proxy2,
            upstream,
            server_ca,
            server_ca_path,
            client_ca,
            cert_a,
            cert_b,
            files_a,
            files_b,
            pki,
            config,
            config2,
        };
        w.wait_loaded(&w.proxy);
        if let Some(p) = &w.proxy2 {
            w.wait_loaded(p);
        }
        Some(w)
    }

    /// Waits until `proxy` serves the policies and holds the issuer's keys.
    fn wait_loaded(&self, proxy: &Proxy) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let api = curl_https(proxy.https, &self.server_ca_path, API, "/", None, &[]);
            let app = curl_https(proxy.https, &self.server_ca_path, APP, "/", None, &[]);
            let keys = proxy.metric("tlsward_oidc_keys", &[("issuer", &self.issuer)]);
            if api.status == 401 && app.status == 302 && keys > 0.0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the proxy never served the OIDC policies (api {} app {} keys {keys}):\n{}\n{}",
                api.status,
                app.status,
                proxy.log(),
                self.op().log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Replaces the first proxy's session-key Secret (it reloads).
    pub fn set_session_keys(&self, keys: &[(&str, &str)]) {
        login_secrets(self.config.path(), keys);
    }

    pub fn op(&self) -> &OidcProvider {
        self.op.as_ref().expect("the provider was stopped")
    }

    /// Stops the provider.
    pub fn stop_provider(&mut self) {
        self.op = None;
    }

    /// curl to `host` on the first proxy.
    pub fn curl(
        &self,
        host: &str,
        path: &str,
        client: Option<&ClientFiles>,
        extra: &[&str],
    ) -> Curl {
        curl_https(
            self.proxy.https,
            &self.server_ca_path,
            host,
            path,
            client,
            extra,
        )
    }

    /// curl to `host` with `Authorization: Bearer token`.
    pub fn bearer(
        &self,
        host: &str,
        path: &str,
        token: &str,
        client: Option<&ClientFiles>,
    ) -> Curl {
        let auth = format!("Authorization: Bearer {token}");
        self.curl(host, path, client, &["-H", &auth])
    }

    /// A token from the real client_credentials grant for the API: scope
    /// `inventory.read`, group `inventory-readers`, email, `alg`.
    pub fn api_token(&self, alg: &str) -> String {
        self.op().client_credentials_token_with_claims(
            API_RESOURCE,
            "inventory.read",
            Some(alg),
            None,
            &json!({"groups": ["inventory-readers", "ops"], "email": "svc@example.test"}),
        )
    }

    /// The same, bound to `leaf` (the mTLS client, `cnf.x5t#S256`).
    pub fn bound_token(&self, leaf: &Leaf) -> String {
        let t = self.op().client_credentials_token_with_claims(
            API_RESOURCE,
            "inventory.read",
            None,
            Some((&leaf.cert_pem, &leaf.key_pem)),
            &json!({"groups": ["inventory-readers"]}),
        );
        assert!(
            jwt_parts(&t).1["cnf"]["x5t#S256"].is_string(),
            "not bound: {t}"
        );
        t
    }

    /// A payload the API accepts (for tokens signed directly).
    pub fn api_claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.issuer,
            "aud": API_RESOURCE,
            "sub": "direct-signed",
            "client_id": "api-client",
            "scope": "inventory.read",
            "groups": ["inventory-readers"],
            "iat": now,
            "exp": now + 300,
            "jti": format!("jti-{}", session_key("jti")),
        })
    }

    /// `tlsward_proxy_authentications_total` for `host`, `method`, `result`.
    pub fn auth_metric(&self, host: &str, method: &str, result: &str) -> f64 {
        self.proxy.metric(
            "tlsward_proxy_authentications_total",
            &[("host", host), ("method", method), ("result", result)],
        )
    }

    /// A cookie-keeping browser for the first proxy (or the second).
    pub fn browser(&self, client: Option<&ClientFiles>) -> Browser {
        Browser::new(self, client, self.proxy.https)
    }

    pub fn browser_on(&self, port: u16, client: Option<&ClientFiles>) -> Browser {
        Browser::new(self, client, port)
    }

    pub fn app_url(&self, path: &str) -> String {
        format!("https://{APP}:{}{path}", self.proxy.https)
    }
}

/// One response as the browser saw it.
#[derive(Debug, Clone)]
pub struct Hop {
    pub url: String,
    pub status: u16,
    /// Absolute Location, when the response had one.
    pub location: Option<String>,
    /// The raw `Location` header.
    pub raw_location: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl Hop {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// curl with a cookie jar, trusting the proxy's and the provider's CAs,
/// resolving the proxy's hosts to 127.0.0.1, and sending a client
/// certificate to the proxy (never to the provider) when given.
pub struct Browser {
    dir: tempfile::TempDir,
    jar: PathBuf,
    base: Vec<String>,
    client: Option<ClientFiles>,
    proxy_port: u16,
}

impl Browser {
    fn new(w: &OidcWorld, client: Option<&ClientFiles>, port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("cas.pem");
        std::fs::write(&bundle, format!("{}\n{}", w.server_ca.pem(), w.op_ca_pem)).unwrap();
        let jar = dir.path().join("cookies.txt");
        let base = vec![
            "--cacert".into(),
            bundle.display().to_string(),
            "-b".into(),
            jar.display().to_string(),
            "-c".into(),
            jar.display().to_string(),
            "--resolve".into(),
            format!("{APP}:{port}:127.0.0.1"),
            "--resolve".into(),
            format!("{DENY}:{port}:127.0.0.1"),
            "--path-as-is".into(),
        ];
        Self {
            dir,
            jar,
            base,
            client: client.cloned(),
            proxy_port: port,
        }
    }

    /// The same cookies, in a new jar (another copy of the browser).
    pub fn fork(&self) -> Browser {
        let dir = tempfile::tempdir().unwrap();
        let jar = dir.path().join("cookies.txt");
        if self.jar.exists() {
            std::fs::copy(&self.jar, &jar).unwrap();
        }
        let mut base = self.base.clone();
        let old = self.jar.display().to_string();
        for a in base.iter_mut() {
            if *a == old {
                *a = jar.display().to_string();
            }
        }
        Browser {
            dir,
            jar,
            base,
            client: self.client.clone(),
            proxy_port: self.proxy_port,
        }
    }

    /// Uses `client` for the proxy from now on.
    pub fn with_client(mut self, client: Option<&ClientFiles>) -> Self {
        self.client = client.cloned();
        self
    }

    fn is_proxy(&self, url: &str) -> bool {
        url.starts_with(&format!("https://{APP}:{}", self.proxy_port))
            || url.starts_with(&format!("https://{LOCAL}:{}", self.proxy_port))
            || url.starts_with(&format!("https://{DENY}:{}", self.proxy_port))
    }

    /// One request (`extra` curl args before the URL).
    pub fn get(&self, url: &str, extra: &[&str]) -> Hop {
        let mut args: Vec<String> = self.base.clone();
        if let (Some(c), true) = (&self.client, self.is_proxy(url)) {
            args.extend([
                "--cert".into(),
                c.cert.display().to_string(),
                "--key".into(),
                c.key.display().to_string(),
            ]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(url.to_string());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = curl(&refs);
        assert_eq!(out.exit, 0, "GET {url}: {out:?}");
        let raw_location = out.header("location");
        let location = raw_location.as_deref().map(|l| absolute(url, l));
        let set_cookies = out
            .headers
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("set-cookie")
                    .then(|| v.trim().to_string())
            })
            .collect();
        Hop {
            url: url.to_string(),
            status: out.status,
            location,
            raw_location,
            set_cookies,
            body: out.body,
        }
    }

    /// Follows redirects from `url` until a response is not a redirect or
    /// the next URL starts with `stop_prefix` (then not requested). Every
    /// response, in order.
    pub fn follow(&self, url: &str, stop_prefix: Option<&str>) -> Vec<Hop> {
        let mut hops = Vec::new();
        let mut next = url.to_string();
        for _ in 0..20 {
            let hop = self.get(&next, &[]);
            let loc = hop.location.clone();
            hops.push(hop);
            let Some(loc) = loc.filter(|_| (300..400).contains(&hops.last().unwrap().status))
            else {
                return hops;
            };
            if stop_prefix.is_some_and(|p| loc.starts_with(p)) {
                return hops;
            }
            next = loc;
        }
        panic!("more than 20 redirects: {hops:#?}");
    }

    /// Logs in by visiting `path` on the app: the final response (the
    /// upstream's, normally) and every hop.
    pub fn login(&self, path: &str) -> Vec<Hop> {
        let url = format!("https://{APP}:{}{path}", self.proxy_port);
        self.follow(&url, None)
    }

    /// The jar's cookies for `host`: (name, value).
    pub fn cookies(&self, host: &str) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.jar).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let l = l.strip_prefix("#HttpOnly_").unwrap_or(l);
                if l.starts_with('#') || l.trim().is_empty() {
                    return None;
                }
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() >= 7 && f[0] == host).then(|| (f[5].to_string(), f[6].to_string()))
            })
            .collect()
    }

    /// The session cookies the jar holds for the app, as a Cookie header.
    pub fn session_cookie_header(&self) -> String {
        self.cookies(APP)
            .into_iter()
            .filter(|(n, _)| n.starts_with("__Host-tlsward-session"))
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// `loc` resolved against `base` (absolute, or a path on base's origin).
pub fn absolute(base: &str, loc: &str) -> String {
    if loc.starts_with("https://") || loc.starts_with("http://") {
        return loc.to_string();
    }
    let origin_end = base
        .match_indices('/')
        .nth(2)
        .map(|(i, _)| i)
        .unwrap_or(base.len());
    let origin = &base[..origin_end];
    if let Some(rest) = loc.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        return format!("{scheme}://{rest}");
    }
    format!("{origin}{loc}")
}

/// Sends a request with a hand-made Cookie header (no jar) to the app.
pub fn with_cookie(
    w: &OidcWorld,
    port: u16,
    path: &str,
    cookie: &str,
    client: Option<&ClientFiles>,
    extra: &[&str],
) -> Curl {
    let header = format!("Cookie: {cookie}");
    let mut args = vec!["-H", header.as_str()];
    args.extend_from_slice(extra);
    curl_https(port, &w.server_ca_path, APP, path, client, &args)
}
