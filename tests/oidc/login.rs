//! Browser login through the proxy, end to end with the real provider and
//! a cookie-keeping curl: authorization-code flow with PKCE, the session
//! cookie, the identity headers, refresh, RP-initiated and back-channel
//! logout, large sessions in several cookies, sessions bound to the client
//! certificate, 401 for API clients, public paths.

use std::time::Duration;

use crate::oidc_provider::query_param;
use crate::support::*;
use crate::world::*;

fn cookie_name(set_cookie: &str) -> &str {
    set_cookie.split('=').next().unwrap_or_default()
}

/// Logs in at `path`; asserts it ends at the upstream and returns the hops.
fn logged_in(w: &OidcWorld, b: &Browser, path: &str) -> Vec<Hop> {
    let hops = b.login(path);
    let last = hops.last().unwrap();
    assert_eq!(
        last.status,
        200,
        "login did not reach the upstream: {hops:#?}\nproxy:\n{}\nprovider:\n{}",
        w.proxy.log(),
        w.op().log()
    );
    hops
}

#[test]
fn login_end_to_end_lands_on_the_original_path_with_identity_headers() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let b = w.browser(None);
    let hops = logged_in(&w, &b, "/dashboard/x?tab=2");

    // 1. The proxy sends the browser to the provider with a flow cookie.
    let first = &hops[0];
    assert_eq!(first.status, 302, "{first:?}");
    let to_idp = first.location.clone().unwrap();
    assert!(
        to_idp.starts_with(&format!("{}/auth?", w.issuer)),
        "{to_idp}"
    );
    let redirect_uri = format!("https://{APP}:{}/.tlsward/callback", w.proxy.https);
    assert_eq!(
        query_param(&to_idp, "redirect_uri").as_deref(),
        Some(redirect_uri.as_str())
    );
    assert_eq!(
        query_param(&to_idp, "code_challenge_method").as_deref(),
        Some("S256")
    );
    assert_eq!(
        query_param(&to_idp, "response_type").as_deref(),
        Some("code")
    );
    assert!(query_param(&to_idp, "nonce").is_some_and(|n| n.len() >= 16));
    let state = query_param(&to_idp, "state").unwrap();
    let flow: Vec<&String> = first
        .set_cookies
        .iter()
        .filter(|c| c.starts_with("__Host-tlsward-flow-"))
        .collect();
    assert_eq!(flow.len(), 1, "{:?}", first.set_cookies);
    let flow_name = cookie_name(flow[0]);
    assert_eq!(
        flow_name.len(),
        "__Host-tlsward-flow-".len() + 8,
        "{flow_name}"
    );
    assert_eq!(&flow_name["__Host-tlsward-flow-".len()..], &state[..8]);
    for attr in ["Secure", "HttpOnly", "Path=/"] {
        assert!(
            flow[0].contains(attr),
            "flow cookie lacks {attr}: {}",
            flow[0]
        );
    }

    // 2. The callback sets the session and sends the browser back.
    let cb = hops
        .iter()
        .find(|h| h.url.starts_with(&redirect_uri))
        .unwrap_or_else(|| panic!("no callback: {hops:#?}"));
    assert_eq!(cb.status, 302, "{cb:?}");
    assert_eq!(
        cb.raw_location.as_deref(),
        Some("/dashboard/x?tab=2"),
        "back to the original path, same origin"
    );
    assert!(
        cb.set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-tlsward-session")),
        "{:?}",
        cb.set_cookies
    );
    assert!(
        cb.set_cookies
            .iter()
            .any(
                |c| c.starts_with(&format!("{flow_name}=")) && c.contains("Max-Age=0")
                    || c.starts_with(&format!("{flow_name}=;"))
            ),
        "the flow cookie must be cleared: {:?}",
        cb.set_cookies
    );

    // 3. The upstream sees the user, never the session cookie.
    let last = hops.last().unwrap();
    let body = last.json();
    assert_eq!(body["path"], "/dashboard/x");
    assert_eq!(body["query"], "tab=2");
    assert_eq!(echoed(&body, "x-auth-request-user"), ["alice"]);
    assert_eq!(
        echoed(&body, "x-auth-request-email"),
        ["alice@example.test"]
    );
    assert_eq!(
        echoed(&body, "x-auth-request-groups"),
        ["developers,inventory-readers"]
    );
    assert_eq!(
        echoed(&body, &ACCESS_TOKEN_HEADER.to_ascii_lowercase()).len(),
        1
    );
    let cookies = echoed(&body, "cookie").join("; ");
    assert!(
        !cookies.contains("tlsward-session"),
        "cookie upstream: {cookies}"
    );
    assert!(
        !cookies.contains("tlsward-flow"),
        "cookie upstream: {cookies}"
    );

    // 4. The next request goes straight through, and the app's own cookies
    // still reach the upstream.
    let r = b.get(&w.app_url("/next"), &["-H", "Cookie: theme=dark"]);
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    assert_eq!(echoed(&body, "x-auth-request-user"), ["alice"]);
    let cookies = echoed(&body, "cookie").join("; ");
    assert!(cookies.contains("theme=dark"), "{cookies}");
    assert!(!cookies.contains("tlsward-session"), "{cookies}");

    assert!(w.auth_metric(APP, "login", "login_started") >= 1.0);
    assert!(w.auth_metric(APP, "login", "login_completed") >= 1.0);
    assert!(
        w.auth_metric(APP, "session", "ok") >= 2.0,
        "{}",
        w.proxy.metrics()
    );
}

#[test]
fn api_clients_without_a_session_get_401_and_public_paths_need_nothing() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let hits = w.upstream.hits();
    for (what, extra) in [
        ("XHR", vec!["-H", "X-Requested-With: XMLHttpRequest"]),
        ("JSON", vec!["-H", "Accept: application/json"]),
        ("Authorization", vec!["-H", "Authorization: Bearer abc"]),
        // HTTP/1.1: over h2 see bearer::a_refused_post_over_h2_still_gets_its_401.
        ("POST", vec!["--http1.1", "-X", "POST", "--data", "x=1"]),
        ("fetch", vec!["-H", "Sec-Fetch-Mode: cors"]),
    ] {
        let r = w.curl(APP, "/api/data", None, &extra);
        assert_eq!(r.status, 401, "{what}: {r:?}");
        assert!(r.header("location").is_none(), "{what}: no redirect: {r:?}");
    }
    // A navigation is redirected.
    let r = w.curl(
        APP,
        "/page",
        None,
        &[
            "-H",
            "Accept: text/html,application/xhtml+xml",
            "-H",
            "Sec-Fetch-Mode: navigate",
        ],
    );
    assert_eq!(r.status, 302, "{r:?}");
    assert_eq!(w.upstream.hits(), hits);

    // Public paths.
    for p in ["/public", "/public/", "/public/a/b", "/healthz"] {
        let r = w.curl(APP, p, None, &["--path-as-is"]);
        assert_eq!(r.status, 200, "{p} is public: {r:?}");
    }
    for p in [
        "/public/../admin",
        "/public/./../admin",
        "/public/%2e%2e/admin",
        "/public%2F..%2Fadmin",
        "/publicity",
        "/healthz/x",
        "//public/../admin",
    ] {
        let r = w.curl(APP, p, None, &["--path-as-is"]);
        assert_ne!(r.status, 200, "{p} must not be public: {r:?}");
        assert!(
            r.status == 302 || r.status == 401 || r.status == 400 || r.status == 404,
            "{p}: {r:?}"
        );
    }
    assert!(w.auth_metric(APP, "public", "ok") >= 4.0);
}

#[test]
fn an_expired_access_token_is_refreshed_and_new_cookies_are_set() {
    let Some(w) = OidcWorld::start(Options {
        provider: Some(Box::new(|c| c.access_token_ttl = 8)),
        ..Default::default()
    }) else {
        return;
    };
    let b = w.browser(None);
    let hops = logged_in(&w, &b, "/start");
    let at = |h: &Hop| echoed(&h.json(), &ACCESS_TOKEN_HEADER.to_ascii_lowercase());
    let first_token = at(hops.last().unwrap());
    assert_eq!(first_token.len(), 1);
    let before = b.session_cookie_header();
    let tokens_before = w.op().stats()["token_requests"].as_u64().unwrap();

    // Still fresh: no refresh, no new cookie.
    let r = b.get(&w.app_url("/fresh"), &[]);
    assert_eq!(r.status, 200);
    assert!(
        !r.set_cookies.iter().any(|c| c.contains("tlsward-session")),
        "{:?}",
        r.set_cookies
    );

    // The proxy refreshes within 5 s of expiry: wait past that. Four
    // requests of the same session at once (copies of the cookie) share one
    // refresh.
    std::thread::sleep(Duration::from_secs(4));
    let (port, ca) = (w.proxy.https, w.server_ca_path.clone());
    let concurrent: Vec<Curl> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (ca, cookie) = (ca.clone(), before.clone());
                s.spawn(move || {
                    let h = format!("Cookie: {cookie}");
                    curl_https(port, &ca, APP, "/burst", None, &["-H", &h])
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for c in &concurrent {
        assert_eq!(
            c.status,
            200,
            "concurrent request after expiry: {c:?}\n{}",
            w.proxy.log()
        );
        assert!(
            c.headers
                .to_ascii_lowercase()
                .contains("set-cookie: __host-tlsward-session"),
            "each refreshed answer carries the new session: {c:?}"
        );
    }
    assert_eq!(
        w.op().stats()["token_requests"].as_u64().unwrap(),
        tokens_before + 1,
        "four concurrent requests of one session must cost one refresh grant"
    );
    let r = b.get(&w.app_url("/later"), &[]);
    assert_eq!(r.status, 200, "{r:?}\n{}", w.proxy.log());
    assert!(
        r.set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-tlsward-session")),
        "a refresh must set new session cookies on the upstream's response: {:?}",
        r.set_cookies
    );
    let refreshed = at(&r);
    assert_eq!(refreshed.len(), 1);
    assert_ne!(
        refreshed, first_token,
        "the upstream must see the new access token"
    );
    assert_eq!(
        w.op().stats()["token_requests"].as_u64().unwrap(),
        tokens_before + 1,
        "exactly one refresh grant"
    );
    assert_ne!(
        b.session_cookie_header(),
        before,
        "the jar holds the new session"
    );
    // The new session goes through without another refresh.
    let r = b.get(&w.app_url("/after"), &[]);
    assert_eq!(r.status, 200);
    assert_eq!(at(&r), refreshed);
    assert_eq!(
        w.op().stats()["token_requests"].as_u64().unwrap(),
        tokens_before + 1
    );
}

#[test]
fn rp_initiated_logout_ends_the_session_at_the_proxy_and_the_provider() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let b = w.browser(None);
    logged_in(&w, &b, "/in");
    let r = b.get(&w.app_url("/.tlsward/logout"), &[]);
    assert_eq!(r.status, 302, "{r:?}");
    let end = r.location.clone().unwrap();
    assert!(
        end.starts_with(&format!("{}/session/end", w.issuer)),
        "{end}"
    );
    let back = format!("https://{APP}:{}/logged-out", w.proxy.https);
    assert_eq!(
        query_param(&end, "post_logout_redirect_uri").as_deref(),
        Some(back.as_str())
    );
    assert!(query_param(&end, "id_token_hint").is_some(), "{end}");
    assert!(
        b.session_cookie_header().is_empty(),
        "the session cookies must be cleared: {:?}",
        r.set_cookies
    );
    let hops = b.follow(&end, Some(&back));
    let last = hops.last().unwrap();
    assert_eq!(
        last.location.as_deref().map(|l| l.starts_with(&back)),
        Some(true),
        "the provider sends the browser back: {hops:#?}\n{}",
        w.op().log()
    );
    // Logged out: a navigation starts a new login.
    let r = b.get(&w.app_url("/in"), &[]);
    assert_eq!(r.status, 302, "{r:?}");
    assert!(r.location.unwrap().starts_with(&w.issuer));
}

#[test]
fn backchannel_logout_invalidates_the_session() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let b = w.browser(None);
    logged_in(&w, &b, "/in");
    // A copy of the session, as another device holding the same cookie.
    let stolen = b.session_cookie_header();
    assert!(!stolen.is_empty());
    let r = with_cookie(&w, w.proxy.https, "/copy", &stolen, None, &[]);
    assert_eq!(
        r.status, 200,
        "the copied cookie works before logout: {r:?}"
    );

    // Logout at the provider (through the proxy's RP-initiated logout):
    // the provider POSTs a logout token to the back-channel endpoint.
    let r = b.get(&w.app_url("/.tlsward/logout"), &[]);
    let end = r.location.unwrap();
    let back = format!("https://{APP}:{}/logged-out", w.proxy.https);
    b.follow(&end, Some(&back));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while w.op().stats()["backchannel_logout_ok"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "no back-channel logout delivered: {}\nprovider:\n{}\nproxy:\n{}",
            w.op().stats(),
            w.op().log(),
            w.proxy.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = with_cookie(&w, w.proxy.https, "/copy", &stolen, None, &[]);
    assert_ne!(
        r.status, 200,
        "a session logged out by the back channel must not pass: {r:?}"
    );
    let r = with_cookie(
        &w,
        w.proxy.https,
        "/copy",
        &stolen,
        None,
        &["-H", "Accept: application/json"],
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert!(w.auth_metric(APP, "session", "session_revoked") >= 1.0);

    // A forged logout token is refused.
    let r = w.curl(
        LOCAL,
        "/.tlsward/backchannel-logout",
        None,
        &["--data", "logout_token=eyJhbGciOiJub25lIn0.e30."],
    );
    assert_eq!(r.status, 400, "{r:?}");
}

/// A world whose user has 300 groups; the browser logged in at `/big`:
/// the hops, the groups.
fn big_login(minimal_session: bool) -> Option<(OidcWorld, Browser, Vec<Hop>, Vec<String>)> {
    let groups: Vec<String> = (0..300).map(|i| format!("group-{i:03}")).collect();
    let g = groups.clone();
    let w = OidcWorld::start(Options {
        provider: Some(Box::new(move |c| c.user.groups = g)),
        minimal_session,
        ..Default::default()
    })?;
    let b = w.browser(None);
    // Up to the callback's answer; what the browser does next is the
    // business of the second test.
    let hops = b.follow(&w.app_url("/big"), Some(&w.app_url("/big")));
    Some((w, b, hops, groups))
}

fn session_set_cookies(hops: &[Hop]) -> Vec<String> {
    let cb = hops
        .iter()
        .find(|h| h.url.contains("/.tlsward/callback"))
        .unwrap_or_else(|| panic!("no callback: {hops:#?}"));
    assert_eq!(cb.status, 302, "{cb:?}");
    cb.set_cookies
        .iter()
        .filter(|c| c.starts_with("__Host-tlsward-session"))
        .cloned()
        .collect()
}

#[test]
fn a_large_session_is_split_into_cookies_under_4096_bytes_and_read_back_whole() {
    let Some((w, b, hops, groups)) = big_login(false) else {
        return;
    };
    let session = session_set_cookies(&hops);
    assert!(session.len() >= 2, "several cookies: {session:?}");
    for c in &session {
        assert!(c.len() < 4096, "Set-Cookie of {} bytes", c.len());
        let name = cookie_name(c);
        assert!(
            name.strip_prefix("__Host-tlsward-session-")
                .is_some_and(|n| n.parse::<u32>().is_ok()),
            "{name}"
        );
    }
    // Every chunk sent back (by hand: curl's cookie engine caps its Cookie
    // header at 8190 bytes, see the next test).
    let cookie = b.session_cookie_header();
    assert_eq!(
        cookie.matches("__Host-tlsward-session-").count(),
        session.len()
    );
    let r = with_cookie(&w, w.proxy.https, "/big", &cookie, None, &[]);
    assert_eq!(r.status, 200, "{r:?}\n{}", w.proxy.log());
    let body = r.json();
    let seen = echoed(&body, "x-auth-request-groups");
    assert_eq!(seen.len(), 1);
    let seen: Vec<&str> = seen[0].split(',').collect();
    assert_eq!(seen.len(), 300, "all 300 groups reach the upstream");
    assert_eq!(seen, groups.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !echoed(&body, "cookie")
            .join(";")
            .contains("tlsward-session"),
        "no chunk reaches the upstream"
    );
    // Missing one chunk: refused, not a partial session.
    let partial: Vec<&str> = cookie
        .split("; ")
        .filter(|c| !c.starts_with("__Host-tlsward-session-1="))
        .collect();
    let r = with_cookie(
        &w,
        w.proxy.https,
        "/big",
        &partial.join("; "),
        None,
        &["-H", "Accept: application/json"],
    );
    assert_eq!(r.status, 401, "a session missing a chunk: {r:?}");
}

/// Clients and servers commonly cap a request's Cookie header at 8 KiB
/// (curl sends at most 8190 bytes of cookies; nginx's default header
/// buffer is 8 KiB): a session over that never comes back whole, and the
/// browser loops through the login.
#[test]
fn a_large_session_fits_in_an_8_kib_cookie_header_and_the_browser_lands() {
    let Some((w, b, hops, _)) = big_login(false) else {
        return;
    };
    let session = session_set_cookies(&hops);
    let header: usize = session
        .iter()
        .map(|c| c.split(';').next().unwrap().len() + 2)
        .sum();
    let r = b.get(&w.app_url("/big"), &[]);
    assert_eq!(
        r.status,
        200,
        "the browser's next request after login ({} cookies, a {header}-byte Cookie header): {r:?}",
        session.len()
    );
    assert!(header <= 8190, "Cookie header of {header} bytes");
}

#[test]
fn a_session_is_bound_to_the_client_certificate_it_logged_in_with() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let b = w.browser(Some(&w.files_a));
    logged_in(&w, &b, "/mine");
    let cookie = b.session_cookie_header();
    let ok = with_cookie(&w, w.proxy.https, "/mine", &cookie, Some(&w.files_a), &[]);
    assert_eq!(ok.status, 200, "same certificate: {ok:?}");
    let hits = w.upstream.hits();
    let r = with_cookie(&w, w.proxy.https, "/mine", &cookie, Some(&w.files_b), &[]);
    assert_eq!(r.status, 401, "another certificate: {r:?}");
    let r = with_cookie(&w, w.proxy.https, "/mine", &cookie, None, &[]);
    assert_eq!(r.status, 401, "no certificate: {r:?}");
    assert_eq!(w.upstream.hits(), hits);
    assert!(w.auth_metric(APP, "session", "cert_binding_mismatch") >= 2.0);
    // The owner is not logged out by the attempt.
    let ok = with_cookie(&w, w.proxy.https, "/mine", &cookie, Some(&w.files_a), &[]);
    assert_eq!(ok.status, 200, "{ok:?}");
}

/// `minimalSession` keeps the provider's tokens out of the cookie: 300
/// groups then fit, and the browser lands.
#[test]
fn a_minimal_session_with_300_groups_fits_and_the_browser_lands() {
    let Some((w, b, hops, groups)) = big_login(true) else {
        return;
    };
    let session = session_set_cookies(&hops);
    let header: usize = session
        .iter()
        .map(|c| c.split(';').next().unwrap().len() + 2)
        .sum();
    assert!(header <= 8190, "Cookie header of {header} bytes");
    let r = b.get(&w.app_url("/big"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    let seen = echoed(&body, "x-auth-request-groups");
    assert_eq!(seen[0].split(',').count(), groups.len());
    assert!(
        echoed(&body, &ACCESS_TOKEN_HEADER.to_ascii_lowercase()).is_empty(),
        "a minimal session holds no access token"
    );
}

/// Session-key rotation through the Secret: a new key named `primary`
/// seals new cookies while the old key still opens existing ones; once the
/// old key is removed, its cookies are refused.
#[test]
fn session_keys_rotate_through_the_secret_without_logging_anyone_out() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let b = w.browser(None);
    logged_in(&w, &b, "/in");
    let old = b.session_cookie_header();
    assert!(old.contains("=v1.k1."), "{old}");
    // Keep the key that sealed it: read the Secret back.
    let secrets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(w.proxy.dir.join("secrets.json")).unwrap())
            .unwrap();
    let k1 = secrets["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["metadata"]["name"] == "web-session")
        .unwrap()["stringData"]["k1"]
        .as_str()
        .unwrap()
        .to_string();
    let k2 = session_key("two");
    w.set_session_keys(&[("k1", &k1), ("k2", &k2), ("primary", "k2")]);
    // Wait until new flows are sealed with k2.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = w.browser(None).get(&w.app_url("/probe"), &[]);
        if r.set_cookies.iter().any(|c| c.contains("=v1.k2.")) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new primary key never sealed a cookie: {r:?}\n{}",
            w.proxy.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let json = ["-H", "Accept: application/json"];
    let r = with_cookie(&w, w.proxy.https, "/old", &old, None, &json);
    assert_eq!(r.status, 200, "a k1 cookie after adding k2: {r:?}");
    let b2 = w.browser(None);
    logged_in(&w, &b2, "/new");
    let new = b2.session_cookie_header();
    assert!(new.contains("=v1.k2."), "{new}");

    // k1 retired.
    w.set_session_keys(&[("k2", &k2)]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = with_cookie(&w, w.proxy.https, "/old", &old, None, &json);
        if r.status == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a k1 cookie still passes after k1 was removed: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = with_cookie(&w, w.proxy.https, "/new", &new, None, &json);
    assert_eq!(r.status, 200, "the k2 cookie: {r:?}");
}

#[test]
fn a_user_failing_the_login_claim_rules_gets_403_and_no_session() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let b = w.browser(None);
    let hits = w.upstream.hits();
    let hops = b.follow(&format!("https://{DENY}:{}/admin", w.proxy.https), None);
    let last = hops.last().unwrap();
    assert!(last.url.contains("/.tlsward/callback"), "{hops:#?}");
    assert_eq!(last.status, 403, "{last:?}");
    assert!(
        b.cookies(DENY)
            .iter()
            .all(|(n, _)| !n.starts_with("__Host-tlsward-session")),
        "{:?}",
        b.cookies(DENY)
    );
    assert_eq!(w.upstream.hits(), hits);
    assert!(w.auth_metric(DENY, "login", "claims_denied") >= 1.0);
}

#[test]
fn a_failed_refresh_ends_the_session() {
    let Some(mut w) = OidcWorld::start(Options {
        provider: Some(Box::new(|c| c.access_token_ttl = 6)),
        ..Default::default()
    }) else {
        return;
    };
    let b = w.browser(None);
    logged_in(&w, &b, "/in");
    // Within 5 s of its expiry the token is refreshed, while the provider
    // is up. The provider hands the same refresh token back.
    std::thread::sleep(Duration::from_millis(1500));
    let r = b.get(&w.app_url("/in"), &["-H", "Accept: application/json"]);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.set_cookies
            .iter()
            .any(|c| c.starts_with("__Host-tlsward-session")),
        "the refreshed session is stored: {r:?}"
    );
    w.stop_provider();
    // Past the refreshed token's expiry, but well within the 30 s for which
    // the refresh is remembered: that memory must not hand out the expired
    // token again.
    std::thread::sleep(Duration::from_secs(7));
    let hits = w.upstream.hits();
    let r = b.get(&w.app_url("/in"), &["-H", "Accept: application/json"]);
    assert_eq!(
        r.status, 401,
        "expired access token, refresh impossible: {r:?}"
    );
    assert_eq!(w.upstream.hits(), hits);
    assert!(w.auth_metric(APP, "session", "refresh_failed") >= 1.0);
}

#[test]
fn the_reserved_prefix_never_reaches_the_upstream() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let hits = w.upstream.hits();
    for (host, path) in [
        (APP, "/.tlsward/unknown"),
        (APP, "/.tlsward/backchannel-logout"),
        (API, "/.tlsward/callback?code=x&state=y"),
        (API, "/.tlsward/login"),
    ] {
        let r = w.curl(host, path, None, &[]);
        assert_ne!(r.status, 200, "{host}{path}: {r:?}");
        assert!(r.status >= 400, "{host}{path}: {r:?}");
    }
    assert_eq!(w.upstream.hits(), hits);
}
