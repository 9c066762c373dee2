//! Identity headers the client sends itself never reach the upstream: the
//! claim headers of a token policy and the login's identity headers are
//! removed on every path (token, session, public, refused).

use crate::support::*;
use crate::world::*;

const SPOOFS: [&str; 6] = [
    "X-Auth-Subject: admin",
    "X-Auth-Groups: admins",
    "X-Auth-Email: root@example.test",
    "X-Auth-Request-User: root",
    "X-Auth-Request-Groups: admins",
    "X-Auth-Request-Email: root@example.test",
];

fn spoof_args(extra: &[String]) -> Vec<String> {
    let mut v: Vec<String> = SPOOFS
        .iter()
        .flat_map(|h| ["-H".to_string(), h.to_string()])
        .collect();
    v.extend(extra.iter().cloned());
    v
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn spoofed_identity_headers_never_reach_the_upstream() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    // Bearer: the claim headers come from the token only; a claim the
    // token lacks leaves its header absent, not the client's value.
    let token = w.op().client_credentials_token_with_claims(
        crate::oidc_provider::API_RESOURCE,
        "inventory.read",
        None,
        None,
        &serde_json::json!({"groups": ["inventory-readers"]}),
    );
    let auth = format!("Authorization: Bearer {token}");
    let args = spoof_args(&["-H".into(), auth]);
    let r = w.curl(API, "/", None, &refs(&args));
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    assert_eq!(echoed(&body, "x-auth-groups"), ["inventory-readers"]);
    let sub = echoed(&body, "x-auth-subject");
    assert_eq!(sub.len(), 1, "{sub:?}");
    assert_ne!(sub[0], "admin");
    assert!(
        echoed(&body, "x-auth-email").is_empty(),
        "no email claim, so no email header: {body}"
    );

    // Public path on the login host: no identity, and none spoofed.
    let args = spoof_args(&[]);
    let r = w.curl(APP, "/public/page", None, &refs(&args));
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    for h in [
        "x-auth-request-user",
        "x-auth-request-groups",
        "x-auth-request-email",
    ] {
        assert!(
            echoed(&body, h).is_empty(),
            "{h} reached the upstream: {body}"
        );
    }

    // Session: the real identity only.
    let b = w.browser(None);
    let hops = b.login("/me");
    let last = hops.last().unwrap();
    assert_eq!(last.status, 200, "{hops:#?}");
    let spoofed: Vec<String> = spoof_args(&[]);
    let r = b.get(&w.app_url("/me"), &refs(&spoofed));
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    assert_eq!(echoed(&body, "x-auth-request-user"), ["alice"]);
    assert_eq!(
        echoed(&body, "x-auth-request-groups"),
        ["developers,inventory-readers"]
    );
    assert_eq!(
        echoed(&body, "x-auth-request-email"),
        ["alice@example.test"]
    );
    // Claim headers of other policies are not this policy's business, but
    // the login's own must be the session's.
}
