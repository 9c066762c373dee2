//! Attacks on the browser login: a forged state, a replayed authorization
//! code, open redirects through `rd`, tampered and foreign session cookies,
//! and parallel logins that must not clobber each other.
//!
//! A wrong `nonce` cannot be produced end to end with a real provider: the
//! nonce in the ID token is the one the proxy sent, and splicing another
//! flow's code under this flow's cookie fails PKCE at the provider first.
//! The nonce check is covered by the unit tests of `oidc::login`.

use crate::world::*;

fn callback_prefix(w: &OidcWorld) -> String {
    format!("https://{APP}:{}/.tlsward/callback", w.proxy.https)
}

/// Starts a login at `path` and follows the provider up to (not into) the
/// callback: the callback URL.
fn until_callback(w: &OidcWorld, b: &Browser, path: &str) -> String {
    let hops = b.follow(&w.app_url(path), Some(&callback_prefix(w)));
    let cb = hops.last().unwrap().location.clone().unwrap_or_default();
    assert!(
        cb.starts_with(&callback_prefix(w)),
        "no callback: {hops:#?}\n{}",
        w.op().log()
    );
    cb
}

fn replace_param(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').unwrap();
    let q: Vec<String> = query
        .split('&')
        .map(|kv| {
            if kv.split('=').next() == Some(name) {
                format!("{name}={value}")
            } else {
                kv.to_string()
            }
        })
        .collect();
    format!("{base}?{}", q.join("&"))
}

#[test]
fn a_callback_with_another_state_or_without_the_flow_cookie_is_refused() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let b = w.browser(None);
    let cb = until_callback(&w, &b, "/target");
    let hits = w.upstream.hits();

    // Forged state.
    let forged = replace_param(&cb, "state", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let r = b.fork().get(&forged, &[]);
    assert_eq!(r.status, 400, "forged state: {r:?}");
    assert!(
        !r.set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-tlsward-session")),
        "{:?}",
        r.set_cookies
    );
    // The right URL in a browser that never started the flow (login CSRF).
    let stranger = w.browser(None);
    let r = stranger.get(&cb, &[]);
    assert_eq!(r.status, 400, "no flow cookie: {r:?}");
    assert!(stranger.session_cookie_header().is_empty());
    assert_eq!(w.upstream.hits(), hits);
    assert!(w.auth_metric(APP, "login", "state_mismatch") >= 2.0);

    // The genuine callback still completes (the forged ones did not burn it).
    let hops = b.follow(&cb, None);
    assert_eq!(hops.last().unwrap().status, 200, "{hops:#?}");
}

#[test]
fn a_replayed_authorization_code_is_refused() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let b = w.browser(None);
    let cb = until_callback(&w, &b, "/once");
    // A copy of the browser as it was before the callback: it still holds
    // the flow cookie, so only the code itself can stop the replay.
    let copy = b.fork();
    let hops = b.follow(&cb, None);
    assert_eq!(hops.last().unwrap().status, 200, "{hops:#?}");

    // Same browser, flow cookie gone.
    let r = b.fork().get(&cb, &[]);
    assert_ne!(r.status, 302, "replay in the same browser: {r:?}");
    assert_eq!(r.status, 400, "{r:?}");
    // The copy with the flow cookie: the provider refuses the used code.
    let r = copy.get(&cb, &[]);
    assert_eq!(
        r.status, 400,
        "replayed code with a valid flow cookie: {r:?}"
    );
    assert!(
        !r.set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-tlsward-session") && !c.contains("Max-Age=0")),
        "no session for a replayed code: {:?}",
        r.set_cookies
    );
    assert!(copy.session_cookie_header().is_empty());
    assert!(w.auth_metric(APP, "login", "code_exchange_failed") >= 1.0);
}

#[test]
fn login_never_redirects_off_site() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    for rd in [
        "//evil.example",
        "https://evil.example/x",
        "/\\evil.example",
        "%2F%2Fevil.example",
        "/%2F/evil.example",
        "%5C%5Cevil.example",
        "/%09/evil.example",
        "https:evil.example",
        "javascript:alert(1)",
        "/ok/path?x=1",
    ] {
        let b = w.browser(None);
        let hops = b.follow(&w.app_url(&format!("/.tlsward/login?rd={rd}")), None);
        let cb = hops
            .iter()
            .find(|h| h.url.starts_with(&callback_prefix(&w)))
            .unwrap_or_else(|| panic!("rd={rd}: no callback: {hops:#?}"));
        assert_eq!(cb.status, 302, "rd={rd}: {cb:?}");
        let raw = cb.raw_location.clone().unwrap();
        assert!(
            raw.starts_with('/') && !raw.starts_with("//") && !raw.starts_with("/\\"),
            "rd={rd}: Location {raw:?} is not a same-origin path"
        );
        assert!(
            !raw.contains('\t') && !raw.to_ascii_lowercase().contains("%09"),
            "rd={rd}: {raw:?}"
        );
        let last = hops.last().unwrap();
        assert!(
            last.url.starts_with(&w.app_url("/")),
            "rd={rd}: ended at {}",
            last.url
        );
        assert_eq!(last.status, 200, "rd={rd}: {last:?}");
        if rd == "/ok/path?x=1" {
            assert_eq!(raw, "/ok/path?x=1");
        }
    }
}

#[test]
fn tampered_and_foreign_session_cookies_are_refused() {
    let Some(w) = OidcWorld::start(Options {
        second_proxy: true,
        ..Default::default()
    }) else {
        return;
    };
    let b = w.browser(None);
    let hops = b.login("/in");
    assert_eq!(hops.last().unwrap().status, 200, "{hops:#?}");
    let cookie = b.session_cookie_header();
    let (name, value) = cookie.split_once('=').unwrap();
    assert!(!value.contains(';'), "one cookie expected: {cookie}");
    let hits = w.upstream.hits();

    // Flip one character in the middle.
    let mut bytes = value.as_bytes().to_vec();
    let i = bytes.len() / 2;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = format!("{name}={}", String::from_utf8(bytes).unwrap());
    let json = ["-H", "Accept: application/json"];
    let r = with_cookie(&w, w.proxy.https, "/in", &tampered, None, &json);
    assert_eq!(r.status, 401, "tampered cookie: {r:?}");
    let r = with_cookie(&w, w.proxy.https, "/in", &tampered, None, &[]);
    assert_eq!(r.status, 302, "tampered cookie, navigation: {r:?}");
    // Truncated.
    let truncated = format!("{name}={}", &value[..value.len() - 4]);
    let r = with_cookie(&w, w.proxy.https, "/in", &truncated, None, &json);
    assert_eq!(r.status, 401, "truncated cookie: {r:?}");
    assert_eq!(w.upstream.hits(), hits);

    // A cookie sealed by the second proxy, whose key has the same id but
    // other bytes.
    let p2 = w.proxy2.as_ref().unwrap();
    let b2 = w.browser_on(p2.https, None);
    let hops = b2.login("/in");
    assert_eq!(
        hops.last().unwrap().status,
        200,
        "proxy 2: {hops:#?}\n{}",
        p2.log()
    );
    let foreign = b2.session_cookie_header();
    let hits = w.upstream.hits();
    let r = with_cookie(&w, p2.https, "/in", &foreign, None, &json);
    assert_eq!(r.status, 200, "valid where it was made: {r:?}");
    let r = with_cookie(&w, w.proxy.https, "/in", &foreign, None, &json);
    assert_eq!(r.status, 401, "foreign key: {r:?}");
    // And the other way round.
    let r = with_cookie(&w, p2.https, "/in", &cookie, None, &json);
    assert_eq!(r.status, 401, "foreign key (reverse): {r:?}");
    assert_eq!(w.upstream.hits(), hits + 1);
}

#[test]
fn two_parallel_logins_in_two_tabs_both_land() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let b = w.browser(None);
    // Both tabs start before either finishes.
    let one = b.get(&w.app_url("/tab/one"), &[]);
    let two = b.get(&w.app_url("/tab/two"), &[]);
    assert_eq!((one.status, two.status), (302, 302));
    let flows: Vec<String> = b
        .cookies(APP)
        .into_iter()
        .map(|(n, _)| n)
        .filter(|n| n.starts_with("__Host-tlsward-flow-"))
        .collect();
    assert_eq!(flows.len(), 2, "one flow cookie per tab: {flows:?}");

    let hops = b.follow(&one.location.unwrap(), None);
    let last = hops.last().unwrap();
    assert_eq!(last.status, 200, "tab one: {hops:#?}");
    assert_eq!(last.json()["path"], "/tab/one");
    let hops = b.follow(&two.location.unwrap(), None);
    let last = hops.last().unwrap();
    assert_eq!(last.status, 200, "tab two: {hops:#?}");
    assert_eq!(last.json()["path"], "/tab/two");
}
