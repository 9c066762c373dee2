//! The test OpenID provider itself (`tests/oidc-provider`): if these fail,
//! the proxy's OIDC tests would fail for the harness's sake, not the proxy's.
//! Each test starts its own provider (node, about half a second).

#[path = "common/oidc_provider.rs"]
mod oidc_provider;

use std::io::{Read, Write};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use oidc_provider::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

fn start(config: OidcProviderConfig) -> Option<OidcProvider> {
    OidcProvider::try_start(config)
}

/// A client certificate (PEM cert, PEM key), self-signed: the provider binds
/// tokens to any certificate, it does not authenticate with it.
fn client_cert(cn: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn assert_access_token(op: &OidcProvider, token: &str, alg: &str, scope: &str) -> Value {
    let (header, payload) = jwt_parts(token);
    assert_eq!(header["alg"], alg, "{header}");
    assert_eq!(header["typ"], "at+jwt", "{header}");
    let kid = header["kid"].as_str().unwrap();
    assert!(
        op.jwks_kids().iter().any(|k| k == kid),
        "kid {kid} not in JWKS"
    );
    assert_eq!(payload["iss"], op.issuer.as_str());
    assert_eq!(payload["aud"], API_RESOURCE);
    assert_eq!(payload["scope"], scope);
    let exp = payload["exp"].as_i64().unwrap();
    assert!(exp > now() && exp <= now() + 301, "exp {exp}");
    payload
}

#[test]
fn discovery_names_the_issuer_and_its_endpoints() {
    let Some(op) = start(OidcProviderConfig::default()) else {
        return;
    };
    let d = op.discovery();
    assert_eq!(d["issuer"], op.issuer.as_str());
    assert!(op.issuer.starts_with("https://127.0.0.1:"));
    assert_eq!(d["jwks_uri"], op.url("/jwks").as_str());
    assert_eq!(d["token_endpoint"], op.url("/token").as_str());
    assert_eq!(d["end_session_endpoint"], op.url("/session/end").as_str());
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["tls_client_certificate_bound_access_tokens"], true);
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    // Generated at start: one key per alg.
    let jwks = op.jwks();
    let algs: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["alg"].as_str().unwrap())
        .collect();
    assert_eq!(algs, ["ES256", "RS256"]);
    assert!(jwks["keys"][0].get("d").is_none(), "private key published");
}

#[test]
fn client_credentials_issue_jwt_access_tokens_in_either_alg() {
    let Some(op) = start(OidcProviderConfig::default()) else {
        return;
    };
    let es = op.client_credentials_token(API_RESOURCE, "inventory.read", None, None);
    let p = assert_access_token(&op, &es, "ES256", "inventory.read");
    assert_eq!(p["client_id"], "api-client");
    assert!(p.get("cnf").is_none());

    let rs = op.client_credentials_token(API_RESOURCE, API_SCOPES, Some("RS256"), None);
    assert_access_token(&op, &rs, "RS256", API_SCOPES);

    let claims = json!({"groups": ["g1", "g2"], "email": "svc@example.test",
                        "realm_access": {"roles": ["admin"]}});
    let t = op.client_credentials_token_with_claims(
        API_RESOURCE,
        "inventory.write",
        Some("ES256"),
        None,
        &claims,
    );
    let p = assert_access_token(&op, &t, "ES256", "inventory.write");
    assert_eq!(p["groups"], json!(["g1", "g2"]));
    assert_eq!(p["realm_access"]["roles"], json!(["admin"]));

    // A resource the provider does not know is refused.
    let (status, body) = op.token_request(
        &op.config.api_client,
        &[
            ("grant_type", "client_credentials"),
            ("resource", "https://other.test"),
        ],
        None,
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );
}

#[test]
fn mtls_client_tokens_are_bound_to_the_client_certificate() {
    let Some(op) = start(OidcProviderConfig::default()) else {
        return;
    };
    let (cert, key) = client_cert("workload-a");
    let token =
        op.client_credentials_token(API_RESOURCE, "inventory.read", None, Some((&cert, &key)));
    let p = assert_access_token(&op, &token, "ES256", "inventory.read");
    assert_eq!(p["client_id"], "mtls-client");
    assert_eq!(p["cnf"]["x5t#S256"], x5t_s256(&cert).as_str());
    assert_eq!(x5t_s256(&cert).len(), 43);

    // Without a certificate the bound client gets no token.
    let (status, body) = op.token_request(
        &op.config.mtls_client,
        &[
            ("grant_type", "client_credentials"),
            ("resource", API_RESOURCE),
        ],
        None,
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[test]
fn rotation_publishes_a_new_kid_that_signs_new_tokens() {
    let Some(op) = start(OidcProviderConfig::default()) else {
        return;
    };
    let before =
        jwt_parts(&op.client_credentials_token(API_RESOURCE, "inventory.read", None, None)).0;
    let kids = op.jwks_kids();
    let new = op.rotate("ES256");
    assert!(!kids.contains(&new), "{new} already in {kids:?}");
    let after_kids = op.jwks_kids();
    assert!(after_kids.contains(&new));
    assert!(
        after_kids
            .iter()
            .any(|k| k == before["kid"].as_str().unwrap())
    );
    let after =
        jwt_parts(&op.client_credentials_token(API_RESOURCE, "inventory.read", None, None)).0;
    assert_eq!(after["kid"], new.as_str());
    assert_ne!(after["kid"], before["kid"]);
    // RS256 tokens keep their key.
    let rs = jwt_parts(&op.client_credentials_token(
        API_RESOURCE,
        "inventory.read",
        Some("RS256"),
        None,
    ))
    .0;
    assert_eq!(rs["kid"], "rs256-1");

    let newest = op.rotate_retiring_old("ES256");
    let kids = op.jwks_kids();
    assert!(kids.contains(&newest));
    assert!(
        !kids.contains(&new),
        "retired kid still published: {kids:?}"
    );

    // Direct signing for tokens the grant cannot make: already expired.
    let expired = op.sign(
        &json!({"iss": op.issuer, "aud": API_RESOURCE, "exp": now() - 600, "sub": "x"}),
        "ES256",
        None,
    );
    let (h, p) = jwt_parts(&expired);
    assert_eq!(h["kid"], newest.as_str());
    assert!(p["exp"].as_i64().unwrap() < now());
}

#[test]
fn stats_count_jwks_fetches() {
    let Some(op) = start(OidcProviderConfig::default()) else {
        return;
    };
    assert_eq!(op.jwks_requests(), 0);
    op.jwks();
    op.jwks();
    op.discovery();
    let s = op.stats();
    assert_eq!(s["jwks_requests"], 2);
    assert_eq!(s["discovery_requests"], 1);
    op.reset_stats();
    assert_eq!(op.jwks_requests(), 0);
}

/// The code flow a browser goes through, login and consent answered by the
/// harness: the final redirect to the client carries code, state and iss;
/// the code gives ID, access and refresh tokens.
#[test]
fn authorization_code_flow_reaches_the_redirect_uri_and_refreshes() {
    let groups: Vec<String> = (0..300).map(|i| format!("group-{i:03}")).collect();
    let mut config = OidcProviderConfig {
        access_token_ttl: 5,
        id_token_alg: "RS256".into(),
        ..Default::default()
    };
    config.user.groups = groups.clone();
    let Some(op) = start(config) else {
        return;
    };
    let redirect = "https://app.test/callback";
    let verifier = "verifier-0123456789-0123456789-0123456789-abcdef";
    let url = op.authorization_url(
        redirect,
        "openid email profile groups offline_access",
        "state-1",
        "nonce-1",
        verifier,
        &[("resource", API_RESOURCE)],
    );
    let browser = Browser::new(&[&op.ca_pem]);
    let visited = browser.follow_until(&url, redirect);
    let last = visited.last().unwrap();
    assert!(last.starts_with(redirect), "{visited:#?}\n{}", op.log());
    assert_eq!(query_param(last, "state").as_deref(), Some("state-1"));
    assert_eq!(
        query_param(last, "iss").as_deref(),
        Some(op.issuer.as_str())
    );
    let code = query_param(last, "code").unwrap();

    let tokens = op.exchange_code(&code, verifier, redirect);
    assert_eq!(tokens["expires_in"], 5);
    let (h, id) = jwt_parts(tokens["id_token"].as_str().unwrap());
    assert_eq!(h["alg"], "RS256");
    assert_eq!(id["iss"], op.issuer.as_str());
    assert_eq!(id["aud"], "web-client");
    assert_eq!(id["nonce"], "nonce-1");
    assert_eq!(id["sub"], "test-user");
    assert_eq!(id["email"], "alice@example.test");
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["groups"].as_array().unwrap().len(), 300);
    assert_eq!(id["realm_access"]["roles"], json!(["inventory-reader"]));
    let (_, at) = jwt_parts(tokens["access_token"].as_str().unwrap());
    assert_eq!(at["aud"], API_RESOURCE);
    assert_eq!(at["sub"], "test-user");
    assert_eq!(at["groups"].as_array().unwrap().len(), 300);

    // A second run reuses the provider session: no login, same redirect.
    let again = browser.follow_until(&url, redirect);
    assert!(again.last().unwrap().starts_with(redirect), "{again:#?}");

    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, refreshed) = op.token_request(
        &op.config.web_client,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        None,
    );
    assert_eq!(status, 200, "{refreshed}");
    assert_ne!(refreshed["access_token"], tokens["access_token"]);
    assert_eq!(refreshed["expires_in"], 5);
}

/// An HTTPS server that answers 200 to every request and sends each request
/// body on the channel: the client's back-channel logout endpoint.
fn logout_receiver() -> (u16, String, mpsc::Receiver<String>) {
    let (ca, cert, key) = serving_pki();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
        PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
    )
    .unwrap();
    let cfg = Arc::new(cfg);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let Ok(n) = tls.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse().ok())?
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        break Some(body.to_string());
                    }
                }
            };
            let _ =
                tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
            if let Some(b) = body {
                let _ = tx.send(b);
            }
        }
    });
    (port, ca, rx)
}

/// RP-initiated logout needs no click, and the provider delivers a logout
/// token for the session to the client's back-channel URI over HTTPS it
/// verifies with the given CA.
#[test]
fn logout_confirms_itself_and_posts_a_backchannel_logout_token() {
    let (port, receiver_ca, bodies) = logout_receiver();
    let config = OidcProviderConfig {
        backchannel_logout_uri: Some(format!("https://127.0.0.1:{port}/oidc/backchannel-logout")),
        trust_ca_pem: Some(receiver_ca),
        ..Default::default()
    };
    let Some(op) = start(config) else {
        return;
    };
    let redirect = "https://app.test/callback";
    let verifier = "another-verifier-0123456789-0123456789-0123456789";
    let url = op.authorization_url(redirect, "openid", "s", "n", verifier, &[]);
    let browser = Browser::new(&[&op.ca_pem]);
    let visited = browser.follow_until(&url, redirect);
    let code = query_param(visited.last().unwrap(), "code").unwrap();
    let id_token = op.exchange_code(&code, verifier, redirect)["id_token"]
        .as_str()
        .unwrap()
        .to_string();
    let sid = jwt_parts(&id_token).1["sid"].as_str().unwrap().to_string();

    let logged_out = "https://app.test/logged-out";
    let end = format!(
        "{}?id_token_hint={id_token}&post_logout_redirect_uri={}&state=bye",
        op.url("/session/end"),
        url_encode(logged_out)
    );
    let visited = browser.follow_until(&end, logged_out);
    let last = visited.last().unwrap();
    assert!(last.starts_with(logged_out), "{visited:#?}\n{}", op.log());
    assert_eq!(query_param(last, "state").as_deref(), Some("bye"));

    let body = bodies
        .recv_timeout(Duration::from_secs(5))
        .expect("no logout token");
    let token = query_param(&format!("?{body}"), "logout_token").unwrap();
    let (h, p) = jwt_parts(&token);
    assert_eq!(h["typ"], "logout+jwt");
    assert_eq!(p["iss"], op.issuer.as_str());
    assert_eq!(p["aud"], "web-client");
    assert_eq!(p["sub"], "test-user");
    assert_eq!(p["sid"], sid.as_str());
    assert!(p["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert_eq!(op.stats()["backchannel_logout_ok"], 1);

    // The provider session is gone: the next authorization asks to log in
    // again (an interaction, not an immediate code).
    let url = op.authorization_url(redirect, "openid", "s2", "n2", verifier, &[]);
    let first = browser.get(&url, &[]);
    assert!(first.location.contains("/interaction/"), "{first:?}");
}
