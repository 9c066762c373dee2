//! A real OpenID provider for the OIDC tests: `tests/oidc-provider/provider.mjs`
//! (npm oidc-provider 9, installed by `scripts/install-test-tools.sh`) as a
//! child process on 127.0.0.1, serving HTTPS with a certificate from a CA made
//! here with rcgen. Requests go through curl (a real client; it sends client
//! certificates and keeps cookies).
//!
//! Include it next to `common` or alone:
//! `#[path = "common/oidc_provider.rs"] mod oidc_provider;`
//! (`#[path = "../common/oidc_provider.rs"]` from `tests/proxy/main.rs`).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};

/// The provider's directory in the repository.
pub fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// Whether node and the installed provider are there. Under `CI=true` a
/// missing piece panics (the test must not pass by skipping); elsewhere it
/// returns false after saying why.
pub fn provider_available() -> bool {
    let installed = provider_dir()
        .join("node_modules/oidc-provider/package.json")
        .is_file();
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if installed && node {
        return true;
    }
    let why = if node {
        "tests/oidc-provider/node_modules is missing: run scripts/install-test-tools.sh"
    } else {
        "node is not on PATH (Node.js >= 20 is needed)"
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the OIDC provider tests need a real provider, and CI=true: {why}"
    );
    eprintln!("NOTICE: skipping an OIDC provider test: {why}");
    false
}

/// A registered client: id and secret (client_secret_basic).
#[derive(Clone, Debug)]
pub struct ClientCreds {
    pub id: String,
    pub secret: String,
}

impl ClientCreds {
    pub fn new(id: &str, secret: &str) -> Self {
        Self {
            id: id.to_string(),
            secret: secret.to_string(),
        }
    }
}

/// A protected resource: JWT access tokens with `aud` = `indicator`.
#[derive(Clone, Debug)]
pub struct Resource {
    pub indicator: String,
    /// Space-separated scopes the resource accepts.
    pub scope: String,
    /// JWS alg of its tokens; None: the provider's `access_token_alg`.
    pub alg: Option<String>,
}

/// The user every login becomes (there is no login form).
#[derive(Clone, Debug)]
pub struct TestUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub preferred_username: String,
    pub name: String,
    pub groups: Vec<String>,
    /// `realm_access.roles`.
    pub roles: Vec<String>,
}

/// What the provider serves; `Default` is a complete working setup.
#[derive(Clone, Debug)]
pub struct OidcProviderConfig {
    /// Lifetime of access tokens of both grants, seconds.
    pub access_token_ttl: u64,
    /// Default JWS alg of JWT access tokens: "ES256" or "RS256".
    pub access_token_alg: String,
    pub resources: Vec<Resource>,
    /// client_credentials client.
    pub api_client: ClientCreds,
    /// client_credentials client whose tokens are bound to the TLS client
    /// certificate used at the token endpoint (`cnf.x5t#S256`).
    pub mtls_client: ClientCreds,
    /// Confidential authorization-code client (PKCE required, refresh tokens).
    pub web_client: ClientCreds,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Where the provider POSTs logout tokens (with `sid`) on logout.
    pub backchannel_logout_uri: Option<String>,
    /// JWS alg of the web client's ID tokens (and logout tokens).
    pub id_token_alg: String,
    /// Resource of the web client's access tokens when its authorization
    /// request names none (JWT then); None: opaque access tokens.
    pub default_resource: Option<String>,
    /// CA PEM the provider trusts for its outgoing requests (back-channel
    /// logout to the proxy).
    pub trust_ca_pem: Option<String>,
    pub user: TestUser,
    /// Extra claims of every client_credentials access token.
    pub service_claims: Value,
}

pub const API_RESOURCE: &str = "https://api.test";
pub const API_SCOPES: &str = "inventory.read inventory.write";

impl Default for OidcProviderConfig {
    fn default() -> Self {
        Self {
            access_token_ttl: 300,
            access_token_alg: "ES256".into(),
            resources: vec![Resource {
                indicator: API_RESOURCE.into(),
                scope: API_SCOPES.into(),
                alg: None,
            }],
            api_client: ClientCreds::new("api-client", "api-client-secret"),
            mtls_client: ClientCreds::new("mtls-client", "mtls-client-secret"),
            web_client: ClientCreds::new("web-client", "web-client-secret"),
            redirect_uris: vec!["https://app.test/callback".into()],
            post_logout_redirect_uris: vec!["https://app.test/logged-out".into()],
            backchannel_logout_uri: None,
            id_token_alg: "ES256".into(),
            default_resource: None,
            trust_ca_pem: None,
            user: TestUser {
                sub: "test-user".into(),
                email: "alice@example.test".into(),
                email_verified: true,
                preferred_username: "alice".into(),
                name: "Alice Test".into(),
                groups: vec!["developers".into(), "inventory-readers".into()],
                roles: vec!["inventory-reader".into()],
            },
            service_claims: json!({}),
        }
    }
}

impl OidcProviderConfig {
    fn to_json(&self, dir: &Path) -> Value {
        let mut web = json!({
            "client_id": self.web_client.id,
            "client_secret": self.web_client.secret,
            "redirect_uris": self.redirect_uris,
            "post_logout_redirect_uris": self.post_logout_redirect_uris,
            "id_token_alg": self.id_token_alg,
        });
        if let Some(uri) = &self.backchannel_logout_uri {
            web["backchannel_logout_uri"] = json!(uri);
        }
        if let Some(r) = &self.default_resource {
            web["default_resource"] = json!(r);
        }
        let mut cfg = json!({
            "port": 0,
            "cert": dir.join("tls.crt"),
            "key": dir.join("tls.key"),
            "access_token_ttl": self.access_token_ttl,
            "access_token_alg": self.access_token_alg,
            "resources": self.resources.iter().map(|r| {
                let mut v = json!({"indicator": r.indicator, "scope": r.scope});
                if let Some(alg) = &r.alg {
                    v["alg"] = json!(alg);
                }
                v
            }).collect::<Vec<_>>(),
            "api_client": {"client_id": self.api_client.id, "client_secret": self.api_client.secret},
            "mtls_client": {"client_id": self.mtls_client.id, "client_secret": self.mtls_client.secret},
            "web_client": web,
            "user": {
                "sub": self.user.sub,
                "email": self.user.email,
                "email_verified": self.user.email_verified,
                "preferred_username": self.user.preferred_username,
                "name": self.user.name,
                "groups": self.user.groups,
                "roles": self.user.roles,
            },
            "service_claims": self.service_claims,
        });
        if self.trust_ca_pem.is_some() {
            cfg["trust_ca"] = json!(dir.join("trust-ca.crt"));
        }
        cfg
    }
}

/// A running provider, killed on drop.
pub struct OidcProvider {
    child: Child,
    /// `https://127.0.0.1:PORT`, as in discovery and in every token's `iss`.
    pub issuer: String,
    pub port: u16,
    /// The CA that signed the provider's serving certificate.
    pub ca_pem: String,
    /// The same CA as a file (for curl or a proxy config).
    pub ca_path: PathBuf,
    pub config: OidcProviderConfig,
    dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

/// A fresh test CA and a serving certificate it signed for
/// 127.0.0.1/localhost: (CA PEM, cert PEM, key PEM).
pub fn serving_pki() -> (String, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "oidc-provider test CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let mut params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "oidc-provider");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

impl OidcProvider {
    /// Starts the provider, or returns None (outside CI) when node or the
    /// npm install is missing; see [`provider_available`].
    pub fn try_start(config: OidcProviderConfig) -> Option<Self> {
        provider_available().then(|| Self::start(config))
    }

    /// Starts the provider and waits (up to 20 s) for its READY line;
    /// panics with its stderr when it does not come.
    pub fn start(config: OidcProviderConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, cert, key) = serving_pki();
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, &ca_pem).unwrap();
        std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
        std::fs::write(dir.path().join("tls.key"), key).unwrap();
        if let Some(pem) = &config.trust_ca_pem {
            std::fs::write(dir.path().join("trust-ca.crt"), pem).unwrap();
        }
        let stderr_path = dir.path().join("stderr.log");
        let mut child = Command::new("node")
            .arg(provider_dir().join("provider.mjs"))
            .arg(config.to_json(dir.path()).to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start node tests/oidc-provider/provider.mjs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = BufReader::new(stdout).read_line(&mut first);
            let _ = tx.send(first);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(issuer) = line.trim().strip_prefix("READY ").map(str::to_string) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the OIDC provider did not start (stdout {line:?}); stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        };
        let port = issuer.rsplit(':').next().unwrap().parse().unwrap();
        Self {
            child,
            issuer,
            port,
            ca_pem,
            ca_path,
            config,
            dir,
            stderr_path,
        }
    }

    /// What the provider wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// A directory that lives as long as the provider (for test files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// curl against the provider, trusting its CA; `args` end with the URL.
    pub fn curl(&self, args: &[&str]) -> CurlOut {
        let mut all = vec!["--cacert", self.ca_path.to_str().unwrap()];
        all.extend_from_slice(args);
        curl(&all)
    }

    /// The discovery document.
    pub fn discovery(&self) -> Value {
        self.get_json("/.well-known/openid-configuration")
    }

    /// The JWKS (this counts as a JWKS request in [`Self::stats`]).
    pub fn jwks(&self) -> Value {
        self.get_json("/jwks")
    }

    /// The kids in the JWKS (counts as a JWKS request).
    pub fn jwks_kids(&self) -> Vec<String> {
        self.jwks()["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    }

    fn get_json(&self, path: &str) -> Value {
        let out = self.curl(&[&self.url(path)]);
        assert_eq!(out.status, 200, "GET {path}: {out:?}\n{}", self.log());
        out.json()
    }

    fn post_json(&self, path: &str, body: Option<&Value>) -> Value {
        let body = body.map(Value::to_string).unwrap_or_default();
        let url = self.url(path);
        let out = self.curl(&[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &body,
            &url,
        ]);
        assert_eq!(out.status, 200, "POST {path}: {out:?}\n{}", self.log());
        out.json()
    }

    /// A raw token endpoint request with client_secret_basic and, when
    /// given, a TLS client certificate (cert PEM, key PEM): (status, JSON).
    pub fn token_request(
        &self,
        client: &ClientCreds,
        form: &[(&str, &str)],
        client_cert: Option<(&str, &str)>,
    ) -> (u16, Value) {
        let basic = format!("{}:{}", client.id, client.secret);
        let mut args: Vec<String> = vec!["-u".into(), basic];
        for (k, v) in form {
            args.push("--data-urlencode".into());
            args.push(format!("{k}={v}"));
        }
        if let Some((cert, key)) = client_cert {
            let n = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let c = self.dir.path().join(format!("client-{n}.crt"));
            let k = self.dir.path().join(format!("client-{n}.key"));
            std::fs::write(&c, cert).unwrap();
            std::fs::write(&k, key).unwrap();
            args.extend([
                "--cert".into(),
                c.display().to_string(),
                "--key".into(),
                k.display().to_string(),
            ]);
        }
        args.push(self.url("/token"));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.curl(&refs);
        let body = serde_json::from_str(&out.body).unwrap_or(Value::Null);
        (out.status, body)
    }

    /// A JWT access token from the real client_credentials grant for
    /// `resource` (its `aud`) and `scope`. `alg` picks ES256/RS256 for this
    /// token (None: the resource's or the provider's default). With
    /// `client_cert` (cert PEM, key PEM) the mTLS client asks over a TLS
    /// connection with that certificate and the token carries
    /// `cnf.x5t#S256`; without, the api client asks.
    pub fn client_credentials_token(
        &self,
        resource: &str,
        scope: &str,
        alg: Option<&str>,
        client_cert: Option<(&str, &str)>,
    ) -> String {
        self.client_credentials_token_with_claims(resource, scope, alg, client_cert, &json!({}))
    }

    /// [`Self::client_credentials_token`] with extra claims in the token
    /// (e.g. `groups`, `email`, `realm_access`), on top of `service_claims`.
    pub fn client_credentials_token_with_claims(
        &self,
        resource: &str,
        scope: &str,
        alg: Option<&str>,
        client_cert: Option<(&str, &str)>,
        claims: &Value,
    ) -> String {
        let client = if client_cert.is_some() {
            &self.config.mtls_client
        } else {
            &self.config.api_client
        };
        let claims = claims.to_string();
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("resource", resource),
            ("scope", scope),
            ("test_claims", claims.as_str()),
        ];
        if let Some(alg) = alg {
            form.push(("test_alg", alg));
        }
        let (status, body) = self.token_request(client, &form, client_cert);
        assert_eq!(status, 200, "token request: {body}\n{}", self.log());
        body["access_token"].as_str().unwrap().to_string()
    }

    /// The web client's code exchange at the token endpoint: the token
    /// response (access_token, id_token, refresh_token, expires_in...).
    pub fn exchange_code(&self, code: &str, verifier: &str, redirect_uri: &str) -> Value {
        let (status, body) = self.token_request(
            &self.config.web_client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
                ("redirect_uri", redirect_uri),
            ],
            None,
        );
        assert_eq!(status, 200, "code exchange: {body}\n{}", self.log());
        body
    }

    /// A JWT signed with the provider's current `alg` key, for payloads the
    /// real grant cannot produce (already expired, wrong `iss`...). `kid`
    /// overrides the header's kid; typ is `at+jwt`.
    pub fn sign(&self, payload: &Value, alg: &str, kid: Option<&str>) -> String {
        let mut body = json!({"payload": payload, "alg": alg});
        if let Some(kid) = kid {
            body["kid"] = json!(kid);
        }
        self.post_json("/__test/sign", Some(&body))["token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Adds a new `alg` signing key (new kid, in the JWKS at once) that signs
    /// every token from now on; the older keys stay in the JWKS. Its kid.
    pub fn rotate(&self, alg: &str) -> String {
        let v = self.post_json(&format!("/__test/rotate?alg={alg}"), None);
        v["kid"].as_str().unwrap().to_string()
    }

    /// [`Self::rotate`], and the older `alg` keys leave the JWKS.
    pub fn rotate_retiring_old(&self, alg: &str) -> String {
        let v = self.post_json(&format!("/__test/rotate?alg={alg}&retire_old=1"), None);
        v["kid"].as_str().unwrap().to_string()
    }

    /// Counters: jwks_requests, discovery_requests, token_requests,
    /// backchannel_logout_ok, backchannel_logout_failed,
    /// backchannel_logout_last_error.
    pub fn stats(&self) -> Value {
        self.get_json("/__test/stats")
    }

    /// How many times the JWKS was fetched (by anyone) since the start or
    /// the last [`Self::reset_stats`].
    pub fn jwks_requests(&self) -> u64 {
        self.stats()["jwks_requests"].as_u64().unwrap()
    }

    pub fn reset_stats(&self) {
        self.post_json("/__test/stats/reset", None);
    }

    /// The web client's authorization URL (code flow, PKCE S256) for
    /// `redirect_uri`, with `extra` query parameters (e.g. `resource`).
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        scope: &str,
        state: &str,
        nonce: &str,
        verifier: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let mut q = vec![
            ("client_id", self.config.web_client.id.as_str()),
            ("response_type", "code"),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge_method", "S256"),
        ];
        let challenge = pkce_challenge(verifier);
        q.push(("code_challenge", &challenge));
        q.extend_from_slice(extra);
        let query: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        format!("{}/auth?{}", self.issuer, query.join("&"))
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// base64url(SHA-256(verifier)): the PKCE S256 challenge.
pub fn pkce_challenge(verifier: &str) -> String {
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// base64url(SHA-256(DER)) of a PEM certificate: the `cnf.x5t#S256` of a
/// token bound to it.
pub fn x5t_s256(cert_pem: &str) -> String {
    use sha2::Digest;
    let b64: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(der))
}

/// A JWT's (header, payload), decoded without verification.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(parts.next().unwrap())
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    };
    (next(), next())
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The value of query parameter `name` in `url` (percent-decoded).
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1.split('#').next()?;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| url_decode(v))
    })
}

fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                if let Ok(b) = u8::from_str_radix(hex, 16) {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What curl did.
#[derive(Debug)]
pub struct CurlOut {
    /// curl's exit code (0: a response was received).
    pub exit: i32,
    /// HTTP status, 0 without a response.
    pub status: u16,
    /// `Location` of a redirect (absolute), empty otherwise.
    pub location: String,
    pub body: String,
    pub stderr: String,
}

impl CurlOut {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Runs curl with `args` (URL last); never follows redirects itself.
pub fn curl(args: &[&str]) -> CurlOut {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-w",
            "\n%{http_code} %{redirect_url}",
        ])
        .args(args)
        .output()
        .expect("curl must be installed (scripts/install-test-tools.sh)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, w) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (status, location) = w.split_once(' ').unwrap_or((w, ""));
    CurlOut {
        exit: out.status.code().unwrap_or(-1),
        status: status.trim().parse().unwrap_or(0),
        location: location.trim().to_string(),
        body: body.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A cookie-keeping client that follows redirects one at a time, like a
/// browser without JavaScript: its cookie jar spans the provider and any
/// other host (the proxy), and it trusts the given CAs.
pub struct Browser {
    dir: tempfile::TempDir,
    extra: Vec<String>,
}

impl Browser {
    /// Trusts `ca_pems` (e.g. the provider's and the proxy's CA).
    pub fn new(ca_pems: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("cas.pem");
        std::fs::write(&bundle, ca_pems.join("\n")).unwrap();
        let jar = dir.path().join("cookies.txt");
        let extra = vec![
            "--cacert".into(),
            bundle.display().to_string(),
            "-b".into(),
            jar.display().to_string(),
            "-c".into(),
            jar.display().to_string(),
        ];
        Self { dir, extra }
    }

    /// Makes `host:port` resolve to 127.0.0.1 (curl --resolve).
    pub fn resolve(mut self, host: &str, port: u16) -> Self {
        self.extra.push("--resolve".into());
        self.extra.push(format!("{host}:{port}:127.0.0.1"));
        self
    }

    /// One GET with the jar (extra curl args before the URL).
    pub fn get(&self, url: &str, args: &[&str]) -> CurlOut {
        let mut all: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        all.push(url);
        curl(&all)
    }

    /// Follows redirects from `url` until one points at a URL starting with
    /// `stop_prefix` (not requested) or a response is not a redirect, at most
    /// 20 hops. The visited URLs, the last being the stop URL or the one
    /// whose response was not a redirect.
    pub fn follow_until(&self, url: &str, stop_prefix: &str) -> Vec<String> {
        let mut visited = vec![url.to_string()];
        let mut next = url.to_string();
        for _ in 0..20 {
            let out = self.get(&next, &[]);
            assert_eq!(out.exit, 0, "GET {next}: {out:?}");
            if !(300..400).contains(&out.status) || out.location.is_empty() {
                return visited;
            }
            next = out.location;
            visited.push(next.clone());
            if next.starts_with(stop_prefix) {
                return visited;
            }
        }
        panic!("more than 20 redirects: {visited:?}");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
