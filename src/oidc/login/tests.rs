use super::*;
use crate::oidc::session::{KEY_LEN, SessionKeys, open_cookies, seal_cookies};
use aws_lc_rs::rand::SystemRandom;
use serde_json::json;
use std::collections::BTreeMap;

const HOST: &str = "app.example.com";
const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://idp.example.com/realms/main";
const CLIENT: &str = "tlsward";

fn keys() -> SessionKeys {
    SessionKeys::new(vec![("k1".into(), [1; KEY_LEN])]).unwrap()
}

/// A browser's cookie jar, just enough for these tests.
#[derive(Default)]
struct Jar(BTreeMap<String, String>);

impl Jar {
    fn apply(&mut self, set_cookies: &[String]) {
        for c in set_cookies {
            let pair = c.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.into(), value.into());
            }
        }
    }
    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
    fn flows(&self) -> usize {
        self.0
            .keys()
            .filter(|n| n.starts_with(FLOW_COOKIE_PREFIX))
            .count()
    }
}

fn begin(jar: &mut Jar, return_to: &str, now: i64) -> Started {
    let started = start(
        &keys(),
        HOST,
        return_to,
        &jar.header(),
        now,
        &SystemRandom::new(),
    )
    .unwrap();
    jar.apply(&started.set_cookies);
    started
}

fn query(code: &str, state: &str) -> String {
    format!("code={code}&state={state}&iss={}", urlenc(ISSUER))
}

fn urlenc(s: &str) -> String {
    let mut out = String::new();
    percent_encode(&mut out, s);
    out
}

#[test]
fn pkce_matches_the_rfc_7636_example() {
    assert_eq!(
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    );
}

#[test]
fn generated_pkce_verifiers_are_long_random_and_unreserved() {
    let rng = SystemRandom::new();
    let a = Pkce::generate(&rng).unwrap();
    let b = Pkce::generate(&rng).unwrap();
    assert_ne!(a.verifier, b.verifier);
    assert_eq!(
        a.verifier.len(),
        43,
        "RFC 7636 asks for 43 to 128 characters"
    );
    assert!(
        a.verifier
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    );
    assert_eq!(a.challenge, pkce_challenge(&a.verifier));
    assert!(
        !format!("{a:?}").contains(&a.verifier),
        "verifier kept out of Debug"
    );
}

#[test]
fn the_authorize_url_is_percent_encoded_and_asks_for_code_with_s256() {
    let url = authorize_url(
        "https://idp.example.com/auth",
        "my client",
        "https://app.example.com/oauth2/callback?x=1&y=2",
        &["profile", "email"],
        "st/ate",
        "n+once",
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    );
    assert_eq!(
        url,
        "https://idp.example.com/auth?response_type=code&client_id=my%20client\
         &redirect_uri=https%3A%2F%2Fapp.example.com%2Foauth2%2Fcallback%3Fx%3D1%26y%3D2\
         &scope=openid%20profile%20email&state=st%2Fate&nonce=n%2Bonce\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"
    );
    // An endpoint with a query keeps it; `openid` is not doubled.
    let url = authorize_url(
        "https://idp/auth?tenant=a",
        "c",
        "r",
        &["openid"],
        "s",
        "n",
        "c",
    );
    assert!(
        url.starts_with("https://idp/auth?tenant=a&response_type=code&"),
        "{url}"
    );
    assert!(url.contains("&scope=openid&"), "{url}");
}

#[test]
fn a_login_starts_with_a_sealed_flow_cookie_and_completes() {
    let mut jar = Jar::default();
    let started = begin(&mut jar, "/reports?year=2024", NOW);
    assert_eq!(started.set_cookies.len(), 1);
    let cookie = &started.set_cookies[0];
    let name = flow_cookie_name(&started.state);
    assert_eq!(name, format!("__Host-tlsward-flow-{}", &started.state[..8]));
    assert!(cookie.starts_with(&format!("{name}=v1.k1.")), "{cookie}");
    assert!(
        cookie.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=600"),
        "{cookie}"
    );
    assert!(
        !cookie.contains(&started.nonce) && !cookie.contains("reports"),
        "sealed"
    );
    assert_eq!(started.state.len(), 43);
    assert_ne!(started.state, started.nonce);

    let cb = callback(
        &keys(),
        HOST,
        &format!("?{}", query("the-code", &started.state)),
        &jar.header(),
        ISSUER,
        true,
        NOW + 30,
    )
    .unwrap();
    assert_eq!(cb.code, "the-code");
    assert_eq!(cb.flow.state, started.state);
    assert_eq!(cb.flow.nonce, started.nonce);
    assert_eq!(pkce_challenge(&cb.flow.verifier), started.code_challenge);
    assert_eq!(cb.flow.return_to, "/reports?year=2024");
    assert_eq!(cb.flow.created_at, NOW);
    assert_eq!(
        cb.clear_cookie,
        format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
    );
    let debug = format!("{cb:?}");
    assert!(!debug.contains("the-code") && !debug.contains(&cb.flow.verifier));

    // Once the browser applied the clear, the same callback finds no flow.
    jar.apply(&[cb.clear_cookie]);
    assert_eq!(
        callback(
            &keys(),
            HOST,
            &query("the-code", &started.state),
            &jar.header(),
            ISSUER,
            true,
            NOW + 31
        )
        .unwrap_err(),
        CallbackError::NoFlow
    );
}

#[test]
fn an_unsafe_return_path_becomes_the_root() {
    let mut jar = Jar::default();
    let started = begin(&mut jar, "//evil.example/", NOW);
    assert_eq!(started.return_to, "/");
    let cb = callback(
        &keys(),
        HOST,
        &query("c", &started.state),
        &jar.header(),
        ISSUER,
        false,
        NOW,
    )
    .unwrap();
    assert_eq!(cb.flow.return_to, "/");
}

#[test]
fn two_tabs_log_in_in_parallel_and_both_complete() {
    let mut jar = Jar::default();
    let a = begin(&mut jar, "/a", NOW);
    let b = begin(&mut jar, "/b", NOW + 5);
    assert_eq!(jar.flows(), 2);
    // Tab B comes back first.
    let cb_b = callback(
        &keys(),
        HOST,
        &query("code-b", &b.state),
        &jar.header(),
        ISSUER,
        true,
        NOW + 10,
    )
    .unwrap();
    jar.apply(std::slice::from_ref(&cb_b.clear_cookie));
    let cb_a = callback(
        &keys(),
        HOST,
        &query("code-a", &a.state),
        &jar.header(),
        ISSUER,
        true,
        NOW + 12,
    )
    .unwrap();
    assert_eq!(
        (cb_a.flow.return_to.as_str(), cb_a.flow.nonce.as_str()),
        ("/a", a.nonce.as_str())
    );
    assert_eq!(
        (cb_b.flow.return_to.as_str(), cb_b.flow.nonce.as_str()),
        ("/b", b.nonce.as_str())
    );
    jar.apply(&[cb_a.clear_cookie]);
    assert_eq!(jar.flows(), 0);
}

#[test]
fn a_state_that_is_not_the_flows_is_refused() {
    let mut jar = Jar::default();
    let started = begin(&mut jar, "/", NOW);
    // Same first 8 characters (so the cookie is found), different state.
    let mut forged = started.state.clone();
    let last = if forged.ends_with('A') { "B" } else { "A" };
    forged.replace_range(42.., last);
    assert_eq!(
        callback(
            &keys(),
            HOST,
            &query("c", &forged),
            &jar.header(),
            ISSUER,
            true,
            NOW
        )
        .unwrap_err(),
        CallbackError::StateMismatch
    );
    // A state with no cookie at all.
    let other = "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg";
    assert_eq!(
        callback(
            &keys(),
            HOST,
            &query("c", other),
            &jar.header(),
            ISSUER,
            true,
            NOW
        )
        .unwrap_err(),
        CallbackError::NoFlow
    );
    // Short or odd states name no cookie.
    for odd in ["abc", "..%2F..%2Fxx", "%3Bxxxxxxxxxx"] {
        assert_eq!(
            callback(
                &keys(),
                HOST,
                &query("c", odd),
                &jar.header(),
                ISSUER,
                true,
                NOW
            )
            .unwrap_err(),
            CallbackError::NoFlow,
            "{odd}"
        );
    }
}

#[test]
fn a_flow_cookie_from_another_host_or_key_or_purpose_is_no_flow() {
    let mut jar = Jar::default();
    let started = begin(&mut jar, "/", NOW);
    let q = query("c", &started.state);
    assert_eq!(
        callback(
            &keys(),
            "other.example.com",
            &q,
            &jar.header(),
            ISSUER,
            true,
            NOW
        )
        .unwrap_err(),
        CallbackError::NoFlow
    );
    let other_keys = SessionKeys::new(vec![("k1".into(), [2; KEY_LEN])]).unwrap();
    assert_eq!(
        callback(&other_keys, HOST, &q, &jar.header(), ISSUER, true, NOW).unwrap_err(),
        CallbackError::NoFlow
    );
    // A session cookie's value put under the flow cookie's name.
    let session = Session {
        sub: "s".into(),
        user: "u".into(),
        email: None,
        groups: vec![],
        sid: None,
        iss: ISSUER.into(),
        issued_at: NOW,
        expires_at: NOW + 3600,
        access_token: None,
        access_token_expires_at: None,
        refresh_token: None,
        id_token: None,
        cert_sha256: None,
    };
    let set = seal_cookies(&keys(), HOST, &session, "tlsward", "", NOW).unwrap();
    let value = set[0].split(';').next().unwrap().split_once('=').unwrap().1;
    let header = format!("{}={value}", flow_cookie_name(&started.state));
    assert_eq!(
        callback(&keys(), HOST, &q, &header, ISSUER, true, NOW).unwrap_err(),
        CallbackError::NoFlow
    );
    // And a flow cookie does not open as a session.
    let header = format!("__Host-tlsward={}", jar.0.values().next().unwrap());
    assert_eq!(
        open_cookies(&keys(), HOST, [header.as_str()], "tlsward", NOW).unwrap_err(),
        SessionError::Tampered
    );
}

#[test]
fn a_login_older_than_ten_minutes_is_expired() {
    let mut jar = Jar::default();
    let started = begin(&mut jar, "/", NOW);
    let q = query("c", &started.state);
    assert!(callback(&keys(), HOST, &q, &jar.header(), ISSUER, true, NOW + 600).is_ok());
    assert_eq!(
        callback(&keys(), HOST, &q, &jar.header(), ISSUER, true, NOW + 601).unwrap_err(),
        CallbackError::Expired
    );
    // A flow from the future (clock trouble) is not accepted either.
    assert_eq!(
        callback(&keys(), HOST, &q, &jar.header(), ISSUER, true, NOW - 120).unwrap_err(),
        CallbackError::Expired
    );
}

#[test]
fn the_iss_parameter_is_checked_as_rfc_9207_says() {
    let mut jar = Jar::default();
    let s = begin(&mut jar, "/", NOW);
    let h = jar.header();
    let cb = |q: &str, required: bool| callback(&keys(), HOST, q, &h, ISSUER, required, NOW);
    let with_iss = |iss: &str| format!("code=c&state={}&iss={}", s.state, urlenc(iss));
    let without = format!("code=c&state={}", s.state);
    assert!(cb(&with_iss(ISSUER), true).is_ok());
    assert!(cb(&with_iss(ISSUER), false).is_ok());
    assert!(cb(&without, false).is_ok());
    assert_eq!(
        cb(&without, true).unwrap_err(),
        CallbackError::IssuerMissing
    );
    assert_eq!(
        cb(&with_iss("https://evil.example.com"), false).unwrap_err(),
        CallbackError::IssuerMismatch
    );
    assert_eq!(
        cb(&with_iss(&format!("{ISSUER}/")), false).unwrap_err(),
        CallbackError::IssuerMismatch,
        "exact comparison"
    );
    // An error response from another issuer is a mix-up, not an IdP error.
    let err = format!(
        "error=access_denied&state={}&iss=https%3A%2F%2Fevil",
        s.state
    );
    assert_eq!(cb(&err, false).unwrap_err(), CallbackError::IssuerMismatch);
}

#[test]
fn an_idp_error_is_reported_filtered() {
    let q =
        "error=access_denied&error_description=User%20said%20%22no%22%0A%3Cscript%3E\u{e9}&state=x";
    let err = callback(&keys(), HOST, q, "", ISSUER, false, NOW).unwrap_err();
    assert_eq!(
        err,
        CallbackError::IdpError {
            error: "access_denied".into(),
            description: Some("User said no<script>".into()),
        }
    );
    assert_eq!(
        err.to_string(),
        "the identity provider refused the login: access_denied"
    );
    let long = format!(
        "error={}&error_description={}",
        "e".repeat(500),
        "d".repeat(5000)
    );
    let CallbackError::IdpError { error, description } =
        callback(&keys(), HOST, &long, "", ISSUER, false, NOW).unwrap_err()
    else {
        panic!("not an IdP error");
    };
    assert_eq!(error.len(), 64);
    assert_eq!(description.unwrap().len(), 256);
}

#[test]
fn malformed_callbacks() {
    let cb = |q: &str| callback(&keys(), HOST, q, "", ISSUER, false, NOW).unwrap_err();
    assert_eq!(
        cb("code=a&state=%zz"),
        CallbackError::Malformed("bad query encoding")
    );
    assert_eq!(
        cb("code=a&state=b&state=c"),
        CallbackError::Malformed("bad query encoding")
    );
    assert_eq!(
        cb("code=%FF&state=b"),
        CallbackError::Malformed("bad query encoding")
    );
    assert_eq!(cb("code=a"), CallbackError::Malformed("no state"));
    assert_eq!(cb("state=abcdefghij"), CallbackError::Malformed("no code"));
    assert_eq!(
        cb("code=&state=abcdefghij"),
        CallbackError::Malformed("no code")
    );
    assert_eq!(cb(""), CallbackError::Malformed("no state"));
}

#[test]
fn at_most_four_logins_are_kept_and_the_oldest_goes_first() {
    let mut jar = Jar::default();
    let first = begin(&mut jar, "/1", NOW);
    let second = begin(&mut jar, "/2", NOW + 1);
    begin(&mut jar, "/3", NOW + 2);
    begin(&mut jar, "/4", NOW + 3);
    assert_eq!(jar.flows(), 4);
    let fifth = begin(&mut jar, "/5", NOW + 4);
    assert_eq!(jar.flows(), 4);
    assert_eq!(fifth.set_cookies.len(), 2, "one expiry, one new cookie");
    assert!(fifth.set_cookies[0].starts_with(&format!("{}=;", flow_cookie_name(&first.state))));
    let h = jar.header();
    let done = |s: &Started| {
        callback(
            &keys(),
            HOST,
            &query("c", &s.state),
            &h,
            ISSUER,
            true,
            NOW + 5,
        )
    };
    assert_eq!(done(&first).unwrap_err(), CallbackError::NoFlow);
    assert!(done(&second).is_ok() && done(&fifth).is_ok());

    // Unreadable and stale flow cookies are cleared as well.
    let mut jar = Jar::default();
    let old = begin(&mut jar, "/old", NOW);
    jar.0
        .insert(format!("{FLOW_COOKIE_PREFIX}garbage1"), "v1.k1.AAAA".into());
    let fresh = begin(&mut jar, "/new", NOW + 700);
    assert_eq!(jar.flows(), 1);
    assert!(!jar.0.contains_key(&flow_cookie_name(&old.state)));
    assert!(jar.0.contains_key(&flow_cookie_name(&fresh.state)));
}

#[test]
fn return_paths_that_stay_on_this_origin_are_kept() {
    for ok in [
        "/",
        "/app",
        "/app/",
        "/a/b?c=d&e=f",
        "/search?q=%2F%2Fnot-a-host",
        "/my%20docs",
        "/a//b",
        "/a/%2e%2e/b",
        "/javascript:alert(1)",
        "/%252F%252Fdouble-encoded-stays-a-path",
        "/path#frag",
    ] {
        assert_eq!(safe_return_path(ok).as_deref(), Some(ok), "{ok}");
    }
}

#[test]
fn return_paths_that_could_leave_this_origin_are_refused() {
    for bad in [
        "",
        "app",
        "https://evil.example.com/",
        "http:/evil",
        "javascript:alert(1)",
        "//evil.example.com",
        "///evil.example.com",
        "/\\evil.example.com",
        "\\\\evil.example.com",
        "/a\\b",
        "/%2F%2Fevil.example.com",
        "/%2f/evil.example.com",
        "/%5Cevil.example.com",
        "/%5cevil.example.com",
        "/%09/evil.example.com",
        "/\t/evil.example.com",
        "/\n/evil.example.com",
        "/a\rb",
        "/a%0Ab",
        "/a%0d%0aSet-Cookie:x=y",
        "/a%00b",
        "/a%7Fb",
        "/a b",
        " /a",
        "/caf\u{e9}",
        "/%",
        "/%2",
        "/%zz",
        "/a%5C",
        " //evil.example.com",
    ] {
        assert_eq!(safe_return_path(bad), None, "{bad:?}");
    }
    assert_eq!(safe_return_path(&format!("/{}", "a".repeat(3000))), None);
}

#[test]
fn who_gets_401_instead_of_a_redirect() {
    let browser = RequestHints {
        method: "GET",
        accept: Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        sec_fetch_mode: Some("navigate"),
        ..RequestHints::default()
    };
    let cases: &[(RequestHints<'_>, bool)] = &[
        (browser, false),
        (
            RequestHints {
                method: "HEAD",
                ..browser
            },
            false,
        ),
        (
            RequestHints {
                method: "GET",
                ..RequestHints::default()
            },
            false,
        ),
        (
            RequestHints {
                accept: Some("*/*"),
                sec_fetch_mode: None,
                ..browser
            },
            false,
        ),
        (
            RequestHints {
                accept: Some("application/json, text/html"),
                ..browser
            },
            false,
        ),
        (
            RequestHints {
                x_requested_with: Some("something-else"),
                ..browser
            },
            false,
        ),
        (
            RequestHints {
                sec_fetch_mode: Some("Navigate"),
                ..browser
            },
            false,
        ),
        (
            RequestHints {
                method: "POST",
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                method: "PUT",
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                method: "DELETE",
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                method: "OPTIONS",
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                method: "get",
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                has_authorization: true,
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                accept: Some("application/json"),
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                accept: Some("Application/JSON; charset=utf-8"),
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                accept: Some("application/problem+json, */*"),
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                x_requested_with: Some("XMLHttpRequest"),
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                x_requested_with: Some("xmlhttprequest"),
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                sec_fetch_mode: Some("cors"),
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                sec_fetch_mode: Some("no-cors"),
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                sec_fetch_mode: Some("same-origin"),
                ..browser
            },
            true,
        ),
        (
            RequestHints {
                sec_fetch_mode: Some("websocket"),
                ..browser
            },
            true,
        ),
    ];
    for (i, (hints, expected)) in cases.iter().enumerate() {
        assert_eq!(wants_401(hints), *expected, "case {i}: {hints:?}");
    }
}

fn id_claims() -> Map<String, Value> {
    let v = json!({
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT,
        "exp": NOW + 300,
        "iat": NOW - 5,
        "nonce": "n-0S6_WzA2Mj",
        "preferred_username": "jane",
    });
    v.as_object().unwrap().clone()
}

fn check_id(claims: &Map<String, Value>) -> Result<(), IdTokenError> {
    check_id_token_claims(
        claims,
        CLIENT,
        ISSUER,
        "n-0S6_WzA2Mj",
        None,
        "RS256",
        NOW,
        60,
    )
}

fn with(mut claims: Map<String, Value>, name: &str, value: Value) -> Map<String, Value> {
    claims.insert(name.into(), value);
    claims
}

fn without(mut claims: Map<String, Value>, name: &str) -> Map<String, Value> {
    claims.remove(name);
    claims
}

#[test]
fn id_token_claims_that_pass() {
    assert_eq!(check_id(&id_claims()), Ok(()));
    assert_eq!(check_id(&with(id_claims(), "aud", json!([CLIENT]))), Ok(()));
    assert_eq!(check_id(&with(id_claims(), "azp", json!(CLIENT))), Ok(()));
    let multi = with(id_claims(), "aud", json!(["api", CLIENT]));
    assert_eq!(check_id(&with(multi, "azp", json!(CLIENT))), Ok(()));
    // Fractional NumericDates, and times within the skew.
    assert_eq!(
        check_id(&with(id_claims(), "exp", json!(NOW as f64 + 0.5))),
        Ok(())
    );
    assert_eq!(check_id(&with(id_claims(), "exp", json!(NOW - 30))), Ok(()));
    assert_eq!(check_id(&with(id_claims(), "iat", json!(NOW + 30))), Ok(()));
}

#[test]
fn id_token_claims_that_fail() {
    use IdTokenError as E;
    let cases: Vec<(Map<String, Value>, E)> = vec![
        (
            with(id_claims(), "iss", json!("https://evil.example.com")),
            E::IssuerMismatch,
        ),
        (
            with(id_claims(), "iss", json!(format!("{ISSUER}/"))),
            E::IssuerMismatch,
        ),
        (without(id_claims(), "iss"), E::Missing("iss")),
        (with(id_claims(), "iss", json!(1)), E::BadClaim("iss")),
        (without(id_claims(), "sub"), E::Missing("sub")),
        (
            with(id_claims(), "aud", json!("someone-else")),
            E::AudienceMismatch,
        ),
        (with(id_claims(), "aud", json!([])), E::AudienceMismatch),
        (
            with(id_claims(), "aud", json!(["a", 3])),
            E::BadClaim("aud"),
        ),
        (without(id_claims(), "aud"), E::Missing("aud")),
        (
            with(id_claims(), "azp", json!("someone-else")),
            E::AzpMismatch,
        ),
        (
            with(id_claims(), "aud", json!(["api", CLIENT])),
            E::AzpMissing,
        ),
        (with(id_claims(), "exp", json!(NOW - 60)), E::Expired),
        (
            with(id_claims(), "exp", json!("tomorrow")),
            E::BadClaim("exp"),
        ),
        (without(id_claims(), "exp"), E::Missing("exp")),
        (with(id_claims(), "iat", json!(NOW + 61)), E::NotYetValid),
        (without(id_claims(), "iat"), E::Missing("iat")),
        (with(id_claims(), "nbf", json!(NOW + 61)), E::NotYetValid),
        (
            with(id_claims(), "nonce", json!("n-0S6_WzA2MJ")),
            E::NonceMismatch,
        ),
        (with(id_claims(), "nonce", json!("")), E::NonceMismatch),
        (without(id_claims(), "nonce"), E::NonceMismatch),
    ];
    for (i, (claims, expected)) in cases.into_iter().enumerate() {
        assert_eq!(check_id(&claims), Err(expected), "case {i}");
    }
}

#[test]
fn at_hash_follows_the_signing_algorithm() {
    // OpenID Connect Core 1.0, Appendix A.3 (RS256).
    let token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
    assert_eq!(
        at_hash(token, "RS256").as_deref(),
        Some("77QmUPtjPfzWtF2AnpK9RQ")
    );
    let half = |alg: &'static digest::Algorithm| {
        let d = digest::digest(alg, token.as_bytes());
        URL_SAFE_NO_PAD.encode(&d.as_ref()[..d.as_ref().len() / 2])
    };
    for (alg, hash) in [
        ("ES256", &digest::SHA256),
        ("PS256", &digest::SHA256),
        ("RS384", &digest::SHA384),
        ("ES384", &digest::SHA384),
        ("PS512", &digest::SHA512),
        ("ES512", &digest::SHA512),
        ("EdDSA", &digest::SHA512),
    ] {
        assert_eq!(at_hash(token, alg), Some(half(hash)), "{alg}");
    }
    assert_eq!(at_hash(token, "none"), None);
    assert_eq!(at_hash(token, "Ed448"), None);

    let claims = with(id_claims(), "at_hash", json!("77QmUPtjPfzWtF2AnpK9RQ"));
    let check = |access: Option<&str>, alg: &str| {
        check_id_token_claims(
            &claims,
            CLIENT,
            ISSUER,
            "n-0S6_WzA2Mj",
            access,
            alg,
            NOW,
            60,
        )
    };
    assert_eq!(check(Some(token), "RS256"), Ok(()));
    assert_eq!(
        check(Some("another-token"), "RS256"),
        Err(IdTokenError::AtHashMismatch)
    );
    assert_eq!(
        check(Some(token), "RS512"),
        Err(IdTokenError::AtHashMismatch)
    );
    assert_eq!(
        check(Some(token), "none"),
        Err(IdTokenError::UnsupportedAlg("none".into()))
    );
    // No access token came with it: nothing to bind.
    assert_eq!(check(None, "RS256"), Ok(()));
    // at_hash absent: accepted (optional in the code flow).
    assert_eq!(
        check_id_token_claims(
            &id_claims(),
            CLIENT,
            ISSUER,
            "n-0S6_WzA2Mj",
            Some(token),
            "RS256",
            NOW,
            60
        ),
        Ok(())
    );
}

fn logout_claims() -> Map<String, Value> {
    json!({
        "iss": ISSUER,
        "aud": CLIENT,
        "iat": NOW - 2,
        "exp": NOW + 120,
        "jti": "bWJq",
        "sid": "08a5019c-17e1-4977-8f42-65a12843ea02",
        "sub": "248289761001",
        "events": { BACKCHANNEL_LOGOUT_EVENT: {} },
    })
    .as_object()
    .unwrap()
    .clone()
}

fn check_logout(claims: &Map<String, Value>) -> Result<LogoutSubject, LogoutTokenError> {
    check_logout_token_claims(claims, CLIENT, ISSUER, NOW, 60)
}

#[test]
fn logout_tokens_that_pass() {
    assert_eq!(
        check_logout(&logout_claims()).unwrap(),
        LogoutSubject {
            sid: Some("08a5019c-17e1-4977-8f42-65a12843ea02".into()),
            sub: Some("248289761001".into()),
            jti: Some("bWJq".into()),
        }
    );
    let only_sid = check_logout(&without(logout_claims(), "sub")).unwrap();
    assert_eq!((only_sid.sid.is_some(), only_sid.sub), (true, None));
    let only_sub = check_logout(&without(logout_claims(), "sid")).unwrap();
    assert_eq!((only_sub.sid, only_sub.sub.is_some()), (None, true));
    assert!(check_logout(&without(logout_claims(), "exp")).is_ok());
    assert!(check_logout(&with(logout_claims(), "aud", json!(["x", CLIENT]))).is_ok());
}

#[test]
fn logout_tokens_that_fail() {
    use LogoutTokenError as E;
    let cases: Vec<(Map<String, Value>, E)> = vec![
        (
            with(logout_claims(), "iss", json!("https://evil")),
            E::IssuerMismatch,
        ),
        (without(logout_claims(), "iss"), E::Missing("iss")),
        (
            with(logout_claims(), "aud", json!("other")),
            E::AudienceMismatch,
        ),
        (without(logout_claims(), "iat"), E::Missing("iat")),
        (
            with(logout_claims(), "iat", json!(NOW + 300)),
            E::NotYetValid,
        ),
        (with(logout_claims(), "exp", json!(NOW - 61)), E::Expired),
        (with(logout_claims(), "nonce", json!("n")), E::NoncePresent),
        (without(logout_claims(), "events"), E::Missing("events")),
        (with(logout_claims(), "events", json!({})), E::NoLogoutEvent),
        (
            with(
                logout_claims(),
                "events",
                json!({"http://schemas.openid.net/event/other": {}}),
            ),
            E::NoLogoutEvent,
        ),
        (
            with(logout_claims(), "events", json!([BACKCHANNEL_LOGOUT_EVENT])),
            E::BadClaim("events"),
        ),
        (
            with(
                logout_claims(),
                "events",
                json!({ BACKCHANNEL_LOGOUT_EVENT: "yes" }),
            ),
            E::BadClaim("events"),
        ),
        (
            without(without(logout_claims(), "sid"), "sub"),
            E::NoSubject,
        ),
        (with(logout_claims(), "sid", json!(7)), E::BadClaim("sid")),
    ];
    for (i, (claims, expected)) in cases.into_iter().enumerate() {
        assert_eq!(check_logout(&claims), Err(expected), "case {i}");
    }
    // An ID token is not a logout token.
    assert!(check_logout(&id_claims()).is_err());
}

fn user_session(sub: &str, sid: Option<&str>, issued_at: i64) -> Session {
    Session {
        sub: sub.into(),
        user: sub.into(),
        email: None,
        groups: vec![],
        sid: sid.map(String::from),
        iss: ISSUER.into(),
        issued_at,
        expires_at: issued_at + 3600,
        access_token: None,
        access_token_expires_at: None,
        refresh_token: None,
        id_token: None,
        cert_sha256: None,
    }
}

fn subject(sid: Option<&str>, sub: Option<&str>) -> LogoutSubject {
    LogoutSubject {
        sid: sid.map(String::from),
        sub: sub.map(String::from),
        jti: None,
    }
}

#[test]
fn a_sid_logout_ends_that_session_only() {
    let mut revoked = RevokedSessions::new(100);
    let laptop = user_session("jane", Some("sid-laptop"), NOW - 100);
    let phone = user_session("jane", Some("sid-phone"), NOW - 100);
    assert_eq!(
        revoked.revoke(
            ISSUER,
            &subject(Some("sid-laptop"), Some("jane")),
            NOW,
            NOW + 3600
        ),
        0
    );
    assert!(revoked.is_revoked(&laptop, NOW));
    assert!(!revoked.is_revoked(&phone, NOW));
    // Same sid from another issuer is another session.
    let elsewhere = Session {
        iss: "https://other-idp".into(),
        ..laptop.clone()
    };
    assert!(!revoked.is_revoked(&elsewhere, NOW));
    // Forgotten once the session could no longer be alive anyway.
    assert!(!revoked.is_revoked(&laptop, NOW + 3600));
}

#[test]
fn a_sub_logout_ends_earlier_sessions_but_not_later_logins() {
    let mut revoked = RevokedSessions::new(100);
    revoked.revoke(ISSUER, &subject(None, Some("jane")), NOW, NOW + 3600);
    assert!(revoked.is_revoked(&user_session("jane", Some("a"), NOW - 500), NOW + 1));
    assert!(revoked.is_revoked(&user_session("jane", None, NOW), NOW + 1));
    assert!(!revoked.is_revoked(&user_session("jane", None, NOW + 1), NOW + 2));
    assert!(!revoked.is_revoked(&user_session("john", None, NOW - 500), NOW + 1));
    // A later logout of the same user moves the line forward.
    revoked.revoke(ISSUER, &subject(None, Some("jane")), NOW + 100, NOW + 3700);
    assert!(revoked.is_revoked(&user_session("jane", None, NOW + 50), NOW + 101));
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        revoked.revoke(ISSUER, &subject(None, None), NOW, NOW + 1),
        0
    );
    assert_eq!(revoked.len(), 1);
}

#[test]
fn the_revoked_set_is_bounded() {
    let mut revoked = RevokedSessions::new(3);
    // Expired entries make room without loss.
    revoked.revoke(ISSUER, &subject(Some("old"), None), NOW - 100, NOW - 1);
    revoked.revoke(ISSUER, &subject(Some("a"), None), NOW, NOW + 300);
    revoked.revoke(ISSUER, &subject(None, Some("u")), NOW, NOW + 200);
    assert_eq!(
        revoked.revoke(ISSUER, &subject(Some("b"), None), NOW, NOW + 400),
        0
    );
    assert_eq!(revoked.len(), 3);
    // Full of live entries: the one that expires soonest is dropped, and counted.
    assert_eq!(
        revoked.revoke(ISSUER, &subject(Some("c"), None), NOW, NOW + 500),
        1
    );
    assert_eq!(revoked.len(), 3);
    assert!(!revoked.is_revoked(&user_session("u", None, NOW - 10), NOW + 1));
    for sid in ["a", "b", "c"] {
        assert!(
            revoked.is_revoked(&user_session("x", Some(sid), NOW - 10), NOW + 1),
            "{sid}"
        );
    }
    // Revoking a held entry again needs no room.
    assert_eq!(
        revoked.revoke(ISSUER, &subject(Some("a"), None), NOW, NOW + 900),
        0
    );
    for i in 0..50 {
        revoked.revoke(
            ISSUER,
            &subject(Some(&format!("s{i}")), None),
            NOW,
            NOW + 1000 + i,
        );
        assert!(revoked.len() <= 3);
    }
}

#[test]
fn a_flow_survives_the_redirect_with_session_cookies_beside_it() {
    // The callback must find its flow among other cookies of ours and others.
    let mut jar = Jar::default();
    jar.0.insert("theme".into(), "dark".into());
    jar.0.insert("__Host-tlsward".into(), "v1.k1.AAAA".into());
    let s = begin(&mut jar, "/", NOW);
    let cb = callback(
        &keys(),
        HOST,
        &query("c", &s.state),
        &jar.header(),
        ISSUER,
        true,
        NOW,
    )
    .unwrap();
    assert_eq!(cb.flow.state, s.state);
}
