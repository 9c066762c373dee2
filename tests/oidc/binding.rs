//! RFC 8705 certificate-bound tokens: the provider's mTLS client gets a
//! token carrying `cnf.x5t#S256` of the certificate it used at the token
//! endpoint; the proxy compares it with the connection's certificate.

use crate::oidc_provider::{jwt_parts, x5t_s256};
use crate::world::*;

#[test]
fn a_token_bound_to_one_certificate_passes_only_with_that_certificate() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let token = w.bound_token(&w.cert_a);
    assert_eq!(
        jwt_parts(&token).1["cnf"]["x5t#S256"],
        x5t_s256(&w.cert_a.cert_pem).as_str()
    );
    let hits = w.upstream.hits();
    // IfPresent (api) and Required (bound) alike.
    for host in [API, BOUND] {
        let r = w.bearer(host, "/", &token, Some(&w.files_b));
        assert_eq!(
            r.status, 401,
            "{host}: token of A with certificate B: {r:?}"
        );
        let c = r.header("www-authenticate").unwrap_or_default();
        assert!(c.contains(r#"error="invalid_token""#), "{c:?}");
        let r = w.bearer(host, "/", &token, None);
        assert_eq!(
            r.status, 401,
            "{host}: token of A without a certificate: {r:?}"
        );
    }
    assert_eq!(w.upstream.hits(), hits);
    for host in [API, BOUND] {
        let r = w.bearer(host, "/", &token, Some(&w.files_a));
        assert_eq!(
            r.status,
            200,
            "{host}: token of A with A: {r:?}\n{}",
            w.proxy.log()
        );
    }
    // The cached verification must not let B through after A passed.
    let r = w.bearer(API, "/", &token, Some(&w.files_b));
    assert_eq!(r.status, 401, "after a pass with A, B again: {r:?}");
    assert!(w.auth_metric(API, "bearer", "cert_binding_mismatch") >= 2.0);
}

#[test]
fn required_binding_refuses_unbound_tokens() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let unbound = w.api_token("ES256");
    assert!(jwt_parts(&unbound).1.get("cnf").is_none());
    let r = w.bearer(BOUND, "/", &unbound, Some(&w.files_a));
    assert_eq!(r.status, 401, "unbound token under Required: {r:?}");
    let c = r.header("www-authenticate").unwrap_or_default();
    assert!(c.contains(r#"error="invalid_token""#), "{c:?}");
    // IfPresent lets the unbound token through, with or without a
    // certificate.
    assert_eq!(w.bearer(API, "/", &unbound, Some(&w.files_a)).status, 200);
    assert_eq!(w.bearer(API, "/", &unbound, None).status, 200);
}

#[test]
fn identity_joins_tie_a_claim_to_the_client_certificate() {
    let Some(w) = OidcWorld::start(Options::default()) else {
        return;
    };
    let token = w.op().client_credentials_token_with_claims(
        crate::oidc_provider::API_RESOURCE,
        "inventory.read",
        None,
        None,
        &serde_json::json!({"workload": "a.clients.test"}),
    );
    let r = w.bearer(JOIN, "/", &token, Some(&w.files_a));
    assert_eq!(
        r.status,
        200,
        "claim = DNS SAN of A: {r:?}\n{}",
        w.proxy.log()
    );
    let hits = w.upstream.hits();
    let r = w.bearer(JOIN, "/", &token, Some(&w.files_b));
    assert_eq!(r.status, 403, "certificate B: {r:?}");
    let r = w.bearer(JOIN, "/", &token, None);
    assert_ne!(r.status, 200, "no certificate: {r:?}");
    assert_eq!(w.upstream.hits(), hits);
}
