//! GitHub login at the proxy (issue 14): the real `tlsward proxy` in
//! directory mode, a real upstream, curl as the browser, and a local
//! stand-in for GitHub's OAuth and REST endpoints
//! (`tests/oidc-provider/github-standin.mjs`, node standard library only):
//! github.com cannot be reached here. Also: the proxy's debug log never
//! holds a token, code, cookie, client secret or key.

#[path = "common/mod.rs"]
mod common;
#[path = "common/oidc_provider.rs"]
mod oidc_provider;
#[path = "proxy/support.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine;
use oidc_provider::{Browser, CurlOut, OidcProvider, OidcProviderConfig, query_param};
use serde_json::{Value, json};
use support::{Ca, Proxy, Rule, Upstream};

/// The host behind GitHub login.
const APP: &str = "gh.example.test";
const CLIENT_ID: &str = "Iv1.tlsward0test0app";
const CLIENT_SECRET: &str = "ghsecret-0f8e2d4c6a1b3957e0d2c4a6";
const SESSION_COOKIE: &str = "__Host-tlsward-session";
const FLOW_COOKIE: &str = "__Host-tlsward-flow-";

/// Whether node is there. Under `CI=true` its absence panics (the test must
/// not pass by skipping); elsewhere it returns false after saying why.
fn node_available() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "the GitHub login tests need node (Node.js >= 20) on PATH, and CI=true"
        );
        eprintln!("NOTICE: skipping a GitHub login test: node is not on PATH");
    }
    node
}

/// The running stand-in, killed on drop.
struct GitHub {
    child: Child,
    /// `https://127.0.0.1:PORT`: GitHub's `url` and `apiUrl` at once.
    base: String,
    ca_pem: String,
    ca_path: PathBuf,
    _dir: tempfile::TempDir,
    stderr_path: PathBuf,
}

impl GitHub {
    /// Starts the stand-in with `user` as whoever authorizes, or None
    /// (outside CI) without node.
    fn try_start(user: Value) -> Option<Self> {
        node_available().then(|| Self::start(user))
    }

    fn start(user: Value) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (ca_pem, cert, key) = oidc_provider::serving_pki();
        let ca_path = dir.path().join("ca.crt");
        std::fs::write(&ca_path, &ca_pem).unwrap();
        std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
        std::fs::write(dir.path().join("tls.key"), key).unwrap();
        let config = json!({
            "port": 0,
            "cert": dir.path().join("tls.crt"),
            "key": dir.path().join("tls.key"),
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "user": user,
        });
        let stderr_path = dir.path().join("stderr.log");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider/github-standin.mjs");
        let mut child = Command::new("node")
            .arg(script)
            .arg(config.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .expect("start node tests/oidc-provider/github-standin.mjs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = BufReader::new(stdout).read_line(&mut first);
            let _ = tx.send(first);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(base) = line.trim().strip_prefix("READY ").map(str::to_string) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the GitHub stand-in did not start (stdout {line:?}); stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        };
        Self {
            child,
            base,
            ca_pem,
            ca_path,
            _dir: dir,
            stderr_path,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    fn curl(&self, args: &[&str]) -> CurlOut {
        let mut all = vec!["--cacert", self.ca_path.to_str().unwrap()];
        all.extend_from_slice(args);
        oidc_provider::curl(&all)
    }

    fn get_json(&self, path: &str) -> Value {
        let out = self.curl(&[&self.url(path)]);
        assert_eq!(out.status, 200, "GET {path}: {out:?}\n{}", self.log());
        out.json()
    }

    /// Request counters, refusals by reason, the last authorize query.
    fn stats(&self) -> Value {
        self.get_json("/__test/stats")
    }

    /// Every code, code_verifier and access token the stand-in has seen.
    fn secrets(&self) -> Value {
        self.get_json("/__test/secrets")
    }

    fn register_redirect_uri(&self, uri: &str) {
        let body = json!([uri]).to_string();
        let out = self.curl(&[
            "-X",
            "POST",
            "--data-binary",
            &body,
            &self.url("/__test/redirect_uris"),
        ]);
        assert_eq!(out.status, 200, "{out:?}");
    }
}

impl Drop for GitHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A member of `acme` (allowed) and of team `partners/sre` whose public
/// email is hidden: the address comes from `/user/emails`.
fn member() -> Value {
    json!({
        "login": "octocat",
        "id": 583231,
        "name": "Mona Octocat",
        "email": null,
        "emails": [
            {"email": "mona@personal.test", "primary": false, "verified": true, "visibility": null},
            {"email": "octocat@acme.test", "primary": true, "verified": true, "visibility": "private"},
        ],
        "orgs": [{"login": "acme", "id": 1}, {"login": "partners", "id": 2}],
        "teams": [{"slug": "web", "org": "acme"}, {"slug": "sre", "org": "partners"}],
    })
}

/// A user whose organizations and teams only look like the allowed ones.
fn outsider() -> Value {
    json!({
        "login": "mallory",
        "id": 666,
        "name": "Mallory",
        "email": "mallory@evil.test",
        "emails": [{"email": "mallory@evil.test", "primary": true, "verified": true}],
        "orgs": [{"login": "acme-evil", "id": 9}, {"login": "partners", "id": 2}],
        "teams": [{"slug": "sre-x", "org": "partners"}],
    })
}

/// The proxy with one host under GitHub login (orgs `acme`, team
/// `partners/sre`), the stand-in and an upstream.
struct World {
    proxy: Proxy,
    upstream: Upstream,
    gh: GitHub,
    server_ca: Ca,
    session_key: String,
    _config: tempfile::TempDir,
}

impl World {
    /// `tokens`: a `spec.tokens` for the same policy, if any.
    fn start(gh: GitHub, tokens: Option<Value>, extra: &[&str]) -> World {
        let server_ca = Ca::new("tlsward GitHub test server CA");
        let server = server_ca.server(&[APP], "gh-app", 2030);
        let upstream = Upstream::start("app");
        let config = tempfile::tempdir().unwrap();
        let dir = config.path();
        let session_key = random_key_b64();
        support::write_json(
            dir,
            "secrets.json",
            &[
                support::tls_secret("app-tls", &server.cert_pem, &server.key_pem),
                support::opaque_secret("gh-oauth", &[("client-secret", CLIENT_SECRET)]),
                support::opaque_secret("gh-session", &[("k1", &session_key)]),
            ],
        );
        let mut spec = json!({
            "login": {
                "provider": "GitHub",
                "github": {
                    "url": gh.base,
                    "apiUrl": gh.base,
                    "organizations": ["acme"],
                    "teams": ["partners/sre"],
                },
                "clientId": CLIENT_ID,
                "clientSecretRef": {"name": "gh-oauth"},
                "sessionSecretRef": {"name": "gh-session"},
                "ca": {"inline": gh.ca_pem},
            }
        });
        if let Some(t) = tokens {
            spec["tokens"] = t;
        }
        support::write_yaml(dir, "policies.yaml", &[support::policy("gh", spec)]);
        let root: &[(&str, &str, &str)] = &[("Prefix", "/", "app")];
        support::write_json(
            dir,
            "app.json",
            &[
                support::service("app", &[upstream.addr]),
                support::ingress(
                    "app",
                    Some("gh"),
                    "app-tls",
                    &[Rule {
                        host: APP,
                        paths: root,
                    }],
                ),
            ],
        );
        let proxy = Proxy::start(dir, extra);
        assert_eq!(
            proxy.metric("tlsward_proxy_config_problems", &[]),
            0.0,
            "the GitHub world must load cleanly:\n{}",
            proxy.log()
        );
        gh.register_redirect_uri(&format!("https://{APP}:{}/.tlsward/callback", proxy.https));
        World {
            proxy,
            upstream,
            gh,
            server_ca,
            session_key,
            _config: config,
        }
    }

    fn app_url(&self, path: &str) -> String {
        format!("https://{APP}:{}{path}", self.proxy.https)
    }

    fn browser(&self) -> Browser {
        Browser::new(&[&self.server_ca.pem(), &self.gh.ca_pem]).resolve(APP, self.proxy.https)
    }

    fn auth_count(&self, result: &str) -> f64 {
        self.proxy.metric(
            "tlsward_proxy_authentications_total",
            &[("host", APP), ("result", result)],
        )
    }
}

/// 32 bytes, base64: a session key made now (not crypto-grade randomness;
/// it only has to be unique to this test run).
fn random_key_b64() -> String {
    use sha2::Digest;
    let seed = format!(
        "{:?}{}{:?}",
        std::time::SystemTime::now(),
        std::process::id(),
        std::thread::current().id()
    );
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(seed))
}

/// The cookies in a curl jar: (name, value).
fn jar(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| l.strip_prefix("#HttpOnly_").unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f.len() >= 7).then(|| (f[5].to_string(), f[6].to_string()))
        })
        .collect()
}

fn jar_path(b: &Browser) -> PathBuf {
    b.dir().join("cookies.txt")
}

fn session_cookies(b: &Browser) -> Vec<String> {
    jar(&jar_path(b))
        .into_iter()
        .filter(|(n, _)| n.starts_with(SESSION_COOKIE))
        .map(|(_, v)| v)
        .collect()
}

/// One GET with the browser's jar: the response and its headers.
fn get(b: &Browser, url: &str, extra: &[&str]) -> (CurlOut, String) {
    let headers = b.dir().join("last-headers");
    let h = headers.to_str().unwrap();
    let mut args = vec!["-D", h];
    args.extend_from_slice(extra);
    let out = b.get(url, &args);
    assert_eq!(out.exit, 0, "GET {url}: {out:?}");
    let text = std::fs::read_to_string(&headers).unwrap_or_default();
    (out, text)
}

/// The steps of one login, up to (not including) the callback.
struct Started {
    authorize: String,
    callback: String,
    /// A copy of the jar as it was just before the callback (flow cookie).
    jar_before_callback: PathBuf,
}

/// Visits `path` on the app, goes to the stand-in's authorize endpoint and
/// back to the callback URL, which is not requested.
fn start_login(w: &World, b: &Browser, path: &str) -> Started {
    let (out, _) = get(b, &w.app_url(path), &["-H", "Accept: text/html"]);
    assert_eq!(out.status, 302, "{out:?}\n{}", w.proxy.log());
    let authorize = out.location;
    assert!(
        authorize.starts_with(&w.gh.url("/login/oauth/authorize?")),
        "{authorize}"
    );
    let (out, _) = get(b, &authorize, &[]);
    assert_eq!(out.status, 302, "authorize: {out:?}\n{}", w.gh.log());
    let callback = out.location;
    assert!(
        callback.starts_with(&w.app_url("/.tlsward/callback?")),
        "{callback}"
    );
    let snapshot = b.dir().join("jar-before-callback.txt");
    std::fs::copy(jar_path(b), &snapshot).unwrap();
    Started {
        authorize,
        callback,
        jar_before_callback: snapshot,
    }
}

/// The whole login: the callback's answer must send the browser back to
/// `path` with a session; then `path` is fetched and returned.
fn log_in(w: &World, b: &Browser, path: &str, extra: &[&str]) -> (Started, CurlOut) {
    let started = start_login(w, b, path);
    let (out, headers) = get(b, &started.callback, &[]);
    assert_eq!(out.status, 302, "callback: {out:?}\n{}", w.proxy.log());
    assert_eq!(out.location, w.app_url(path), "{headers}");
    assert!(
        !session_cookies(b).is_empty(),
        "no session cookie: {headers}"
    );
    let (page, _) = get(b, &out.location, extra);
    (started, page)
}

fn header_values(echo: &Value, name: &str) -> Vec<String> {
    echo["headers"][name]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

#[test]
fn a_member_of_an_allowed_org_logs_in_end_to_end() {
    let Some(gh) = GitHub::try_start(member()) else {
        return;
    };
    let w = World::start(gh, None, &[]);
    let b = w.browser();
    // A forged identity header from the browser must not survive.
    let (_, page) = log_in(
        &w,
        &b,
        "/reports?q=1",
        &[
            "-H",
            "X-Auth-Request-User: admin",
            "-H",
            "Cookie: theme=dark",
        ],
    );
    assert_eq!(page.status, 200, "{page:?}\n{}", w.proxy.log());
    let echo = page.json();
    assert_eq!(echo["path"], "/reports");
    assert_eq!(echo["query"], "q=1");
    assert_eq!(header_values(&echo, "x-auth-request-user"), ["octocat"]);
    // /user's email is null (private): the primary verified address of
    // /user/emails, not the first one.
    assert_eq!(
        header_values(&echo, "x-auth-request-email"),
        ["octocat@acme.test"]
    );
    assert_eq!(
        header_values(&echo, "x-auth-request-groups"),
        ["acme,partners,acme/web,partners/sre"]
    );
    // The session cookie stays at the proxy; the app's own cookie goes on.
    let cookies = header_values(&echo, "cookie").join("; ");
    assert!(!cookies.contains("tlsward"), "{cookies}");
    assert!(cookies.contains("theme=dark"), "{cookies}");

    // The proxy exchanged the code once with client_secret_basic and read
    // each REST endpoint once.
    let s = w.gh.stats();
    assert_eq!(s["access_token_issued"], 1, "{s}");
    assert_eq!(s["client_auth"], json!({"basic": 1}), "{s}");
    assert_eq!(s["access_token_refused"], json!({}), "{s}");
    for endpoint in ["user", "user_emails", "user_orgs", "user_teams"] {
        assert_eq!(s[endpoint], 1, "{endpoint}: {s}");
    }
    assert_eq!(s["api_unauthorized"], 0, "{s}");

    // The session carries the next request without GitHub.
    let (again, _) = get(&b, &w.app_url("/other"), &[]);
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(
        header_values(&again.json(), "x-auth-request-user"),
        ["octocat"]
    );
    assert_eq!(w.gh.stats()["user"], 1);
    assert_eq!(w.upstream.hits(), 2);
    assert_eq!(
        w.auth_count("login_completed"),
        1.0,
        "{}",
        w.proxy.metrics()
    );
}

#[test]
fn a_user_in_no_allowed_org_or_team_gets_403_and_no_session() {
    let Some(gh) = GitHub::try_start(outsider()) else {
        return;
    };
    let w = World::start(gh, None, &[]);
    let b = w.browser();
    let started = start_login(&w, &b, "/");
    assert!(
        jar(&jar_path(&b))
            .iter()
            .any(|(n, _)| n.starts_with(FLOW_COOKIE)),
        "a login flow cookie is set before the callback"
    );
    let (out, headers) = get(&b, &started.callback, &[]);
    assert_eq!(out.status, 403, "{out:?}\n{headers}\n{}", w.proxy.log());
    assert!(session_cookies(&b).is_empty(), "{headers}");
    assert!(
        !headers
            .to_ascii_lowercase()
            .contains(&SESSION_COOKIE.to_ascii_lowercase()),
        "{headers}"
    );
    // The flow is over: its cookie is cleared.
    assert!(
        !jar(&jar_path(&b))
            .iter()
            .any(|(n, _)| n.starts_with(FLOW_COOKIE)),
        "{headers}"
    );
    // GitHub was read (the code was good), the upstream never was.
    assert_eq!(w.gh.stats()["access_token_issued"], 1);
    assert_eq!(w.auth_count("claims_denied"), 1.0, "{}", w.proxy.metrics());
    let (again, _) = get(&b, &w.app_url("/"), &["-H", "Accept: text/html"]);
    assert_eq!(again.status, 302, "{again:?}");
    assert!(again.location.starts_with(&w.gh.base), "{again:?}");
    assert_eq!(w.upstream.hits(), 0);
}

#[test]
fn the_authorize_request_uses_pkce_s256_and_no_nonce() {
    let Some(gh) = GitHub::try_start(member()) else {
        return;
    };
    let w = World::start(gh, None, &[]);
    let b = w.browser();
    let started = start_login(&w, &b, "/");
    let url = &started.authorize;
    let p = |name: &str| query_param(url, name);
    assert_eq!(p("code_challenge_method").as_deref(), Some("S256"), "{url}");
    let challenge = p("code_challenge").unwrap_or_default();
    assert_eq!(challenge.len(), 43, "{url}");
    assert!(
        challenge
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "{url}"
    );
    assert_eq!(p("nonce"), None, "GitHub is not OIDC: no nonce: {url}");
    assert_eq!(p("client_id").as_deref(), Some(CLIENT_ID));
    assert_eq!(p("response_type").as_deref(), Some("code"));
    assert_eq!(
        p("redirect_uri"),
        Some(w.app_url("/.tlsward/callback")),
        "{url}"
    );
    assert_eq!(
        p("scope").as_deref(),
        Some("read:user user:email read:org"),
        "{url}"
    );
    let state = p("state").unwrap_or_default();
    assert!(state.len() >= 16, "{url}");
    assert_eq!(query_param(&started.callback, "state"), Some(state));
    // The stand-in got the same request (it refuses one without S256).
    let s = w.gh.stats();
    assert_eq!(s["authorize_refused"], 0, "{s}");
    assert_eq!(
        s["last_authorize_query"]["code_challenge"],
        challenge.as_str()
    );

    // A second login gets a new challenge and state.
    let b2 = w.browser();
    let other = start_login(&w, &b2, "/");
    assert_ne!(
        query_param(&other.authorize, "code_challenge"),
        Some(challenge)
    );
    assert_ne!(
        query_param(&other.authorize, "state"),
        query_param(url, "state")
    );
}

#[test]
fn a_replayed_callback_is_refused_and_makes_no_session() {
    let Some(gh) = GitHub::try_start(member()) else {
        return;
    };
    let w = World::start(gh, None, &[]);
    let b = w.browser();
    let (started, page) = log_in(&w, &b, "/", &[]);
    assert_eq!(page.status, 200, "{page:?}");

    // The same browser again: its flow is spent.
    let (out, headers) = get(&b, &started.callback, &[]);
    assert!((400..500).contains(&out.status), "{out:?}");
    assert!(
        !headers
            .to_ascii_lowercase()
            .contains("set-cookie: __host-tlsward-session"),
        "{headers}"
    );

    // Someone holding the callback URL and the flow cookie (the jar as it
    // was before the callback): state matches, so the code reaches GitHub,
    // which refuses it as used.
    let thief = w.browser();
    std::fs::copy(&started.jar_before_callback, jar_path(&thief)).unwrap();
    assert!(session_cookies(&thief).is_empty());
    let (out, headers) = get(&thief, &started.callback, &[]);
    assert!((400..500).contains(&out.status), "{out:?}\n{headers}");
    assert!(session_cookies(&thief).is_empty(), "{headers}");
    let s = w.gh.stats();
    assert_eq!(
        s["access_token_refused"],
        json!({"bad_verification_code": 1}),
        "{s}"
    );
    assert_eq!(s["access_token_issued"], 1, "{s}");
    // And the thief is sent to log in, not let through.
    let (again, _) = get(&thief, &w.app_url("/"), &["-H", "Accept: text/html"]);
    assert_eq!(again.status, 302, "{again:?}");
    assert!(again.location.starts_with(&w.gh.base), "{again:?}");
    assert_eq!(w.upstream.hits(), 1);
}

/// base64url of JSON.
fn b64json(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn debug_logs_hold_no_token_code_cookie_client_secret_or_key() {
    let Some(gh) = GitHub::try_start(member()) else {
        return;
    };
    // A real issuer for a good bearer token, when its npm install is there.
    let op = OidcProvider::try_start(OidcProviderConfig::default());
    let tokens = match &op {
        Some(op) => json!({"issuers": [{
            "issuer": op.issuer,
            "audiences": [oidc_provider::API_RESOURCE],
            "ca": {"inline": op.ca_pem},
        }]}),
        None => json!({"issuers": [{
            "issuer": gh.url("/issuer"),
            "jwksUri": gh.url("/issuer/jwks"),
            "audiences": [oidc_provider::API_RESOURCE],
            "ca": {"inline": gh.ca_pem},
        }]}),
    };
    let issuer = tokens["issuers"][0]["issuer"].as_str().unwrap().to_string();
    let w = World::start(gh, Some(tokens), &["--log-level", "debug"]);

    // A GitHub login.
    let b = w.browser();
    let (started, page) = log_in(&w, &b, "/", &[]);
    assert_eq!(page.status, 200, "{page:?}\n{}", w.proxy.log());
    let flow_cookies: Vec<String> = jar(&started.jar_before_callback)
        .into_iter()
        .filter(|(n, _)| n.starts_with(FLOW_COOKIE))
        .map(|(_, v)| v)
        .collect();
    assert!(!flow_cookies.is_empty());
    let sessions = session_cookies(&b);
    let code = query_param(&started.callback, "code").unwrap();

    // Bearer tokens: a well-formed one with an unknown key, a garbled one.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = format!(
        "{}.{}.{}",
        b64json(&json!({"alg": "ES256", "typ": "at+jwt", "kid": "no-such-key"})),
        b64json(&json!({"iss": issuer, "aud": oidc_provider::API_RESOURCE,
                        "sub": "svc", "iat": now, "exp": now + 300})),
        "c2lnbmF0dXJlLXRoYXQtZG9lcy1ub3QtdmVyaWZ5LWZvcmdlZC1ieS10aGUtdGVzdA"
    );
    let garbled = "opaque.not-a-jwt.token-f00dfacecafe";
    let bare = Browser::new(&[&w.server_ca.pem()]).resolve(APP, w.proxy.https);
    for bad in [forged.as_str(), garbled] {
        let auth = format!("Authorization: Bearer {bad}");
        let (out, headers) = get(&bare, &w.app_url("/api"), &["-H", &auth]);
        assert_eq!(out.status, 401, "{out:?}\n{headers}\n{}", w.proxy.log());
    }
    let mut secrets: Vec<(String, String)> = vec![
        ("client secret".into(), CLIENT_SECRET.into()),
        ("session key".into(), w.session_key.clone()),
        ("authorization code".into(), code),
        ("forged bearer token".into(), forged.clone()),
        (
            "forged token signature".into(),
            forged.rsplit('.').next().unwrap().into(),
        ),
        ("garbled bearer token".into(), garbled.into()),
    ];
    if let Some(op) = &op {
        let good =
            op.client_credentials_token(oidc_provider::API_RESOURCE, "inventory.read", None, None);
        let auth = format!("Authorization: Bearer {good}");
        let (out, _) = get(&bare, &w.app_url("/api"), &["-H", &auth]);
        assert_eq!(out.status, 200, "{out:?}\n{}", w.proxy.log());
        secrets.push(("good bearer token".into(), good));
    }
    let key_bytes = base64::engine::general_purpose::STANDARD
        .decode(&w.session_key)
        .unwrap();
    secrets.push((
        "session key (hex)".into(),
        key_bytes.iter().map(|b| format!("{b:02x}")).collect(),
    ));
    secrets.push((
        "session key (base64url)".into(),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key_bytes),
    ));
    for v in &sessions {
        secrets.push(("session cookie".into(), v.clone()));
    }
    for v in &flow_cookies {
        secrets.push(("flow cookie".into(), v.clone()));
    }
    let gh_secrets = w.gh.secrets();
    for (what, list) in [
        ("GitHub access token", "access_tokens"),
        ("PKCE code verifier", "code_verifiers"),
    ] {
        let values = gh_secrets[list].as_array().unwrap();
        assert!(!values.is_empty(), "{gh_secrets}");
        for v in values {
            secrets.push((what.into(), v.as_str().unwrap().into()));
        }
    }

    // The log is there, at debug level, and covers these requests (access
    // lines are written in batches: wait for them all).
    let mut needles = vec![
        "login completed",
        "user=octocat",
        "bearer token refused",
        " DEBUG ",
        "path=/.tlsward/callback status=302",
        "path=/api status=401",
    ];
    if op.is_some() {
        needles.push("path=/api status=200");
    }
    assert!(
        w.proxy.wait_log(&needles),
        "the debug log lacks one of {needles:?}:\n{}",
        w.proxy.log()
    );
    let log = w.proxy.log();
    for (what, value) in &secrets {
        assert!(value.len() >= 16, "{what} is too short to search for");
        assert!(
            !log.contains(value.as_str()),
            "the proxy's log holds the {what}:\n{log}"
        );
    }
}

/// GitHub pages `/user/orgs` and `/user/teams` (at most 100 a page): a
/// member whose allowed organization is on the second page must get in.
#[test]
fn an_allowed_org_on_the_second_page_admits() {
    let mut user = member();
    let mut orgs: Vec<Value> = (0..130)
        .map(|i| json!({"login": format!("club-{i:02}"), "id": 100 + i}))
        .collect();
    orgs.push(json!({"login": "acme", "id": 1}));
    user["orgs"] = json!(orgs);
    user["teams"] = json!([]);
    let Some(gh) = GitHub::try_start(user) else {
        return;
    };
    let w = World::start(gh, None, &[]);
    let b = w.browser();
    let (_, page) = log_in(&w, &b, "/", &[]);
    assert_eq!(page.status, 200, "{page:?}\n{}", w.proxy.log());
    let groups = header_values(&page.json(), "x-auth-request-groups").join(",");
    assert!(groups.split(',').any(|g| g == "acme"), "{groups}");
    assert_eq!(groups.split(',').count(), 131, "{groups}");
}
