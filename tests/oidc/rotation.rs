//! Signing-key rotation at the provider: a token with a new `kid` costs
//! exactly one JWKS refetch (concurrent misses share it, and misses are
//! rate-limited to one fetch per 10 s); with the provider gone, tokens
//! signed by keys the proxy already holds keep passing.

use std::time::{Duration, Instant};

use crate::oidc_provider::jwt_parts;
use crate::support::*;
use crate::world::*;

/// The proxy refetches for an unknown kid at most once per this.
const MIN_REFETCH: Duration = Duration::from_secs(10);

#[test]
fn a_new_kid_costs_exactly_one_refetch_and_known_keys_survive_the_provider() {
    let Some(mut w) = OidcWorld::start(Options::default()) else {
        return;
    };
    // The proxy fetched the keys when the policy loaded.
    let loaded = Instant::now();
    let first = w.api_token("ES256");
    assert_eq!(w.bearer(API, "/", &first, None).status, 200);
    let fetched_ok = w.proxy.metric(
        "tlsward_oidc_jwks_fetches_total",
        &[("issuer", &w.issuer), ("result", "success")],
    );
    assert!(fetched_ok >= 1.0, "{}", w.proxy.metrics());
    assert_eq!(
        w.proxy
            .metric("tlsward_oidc_keys", &[("issuer", &w.issuer)]),
        2.0,
        "ES256 and RS256 keys"
    );

    // Past the rate limit of the initial fetch.
    if let Some(left) = (MIN_REFETCH + Duration::from_millis(500)).checked_sub(loaded.elapsed()) {
        std::thread::sleep(left);
    }
    let new_kid = w.op().rotate("ES256");
    // Several distinct tokens with the new kid, minted before counting.
    let tokens: Vec<String> = (0..6).map(|_| w.api_token("ES256")).collect();
    for t in &tokens {
        assert_eq!(jwt_parts(t).0["kid"], new_kid.as_str());
    }
    w.op().reset_stats();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let port = w.proxy.https;
    let ca = w.server_ca_path.clone();
    let statuses: Vec<u16> = rt.block_on(async {
        let handles: Vec<_> = tokens
            .iter()
            .cloned()
            .map(|t| {
                let ca = ca.clone();
                tokio::task::spawn_blocking(move || {
                    let h = format!("Authorization: Bearer {t}");
                    curl_https(port, &ca, API, "/rotated", None, &["-H", &h]).status
                })
            })
            .collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    });
    assert!(
        statuses.iter().all(|s| *s == 200),
        "tokens with the new kid: {statuses:?}\n{}",
        w.proxy.log()
    );
    assert_eq!(
        w.op().jwks_requests(),
        1,
        "six concurrent tokens with one new kid must cost exactly one JWKS fetch"
    );
    assert_eq!(
        w.proxy
            .metric("tlsward_oidc_keys", &[("issuer", &w.issuer)]),
        3.0
    );

    // A token with that kid the proxy has not seen, for later.
    let es_known = w.api_token("ES256");
    assert_eq!(jwt_parts(&es_known).0["kid"], new_kid.as_str());

    // Another rotation within 10 s of that fetch: the miss is not refetched
    // (rate limit), so the token is refused for now, and the JWKS is not hit.
    let newer_kid = w.op().rotate("ES256");
    let newer = w.api_token("ES256");
    assert_eq!(jwt_parts(&newer).0["kid"], newer_kid.as_str());
    w.op().reset_stats();
    let r = w.bearer(API, "/", &newer, None);
    assert_eq!(r.status, 401, "rate-limited refetch: {r:?}");
    assert_eq!(
        w.op().jwks_requests(),
        0,
        "a miss within 10 s must not refetch"
    );

    // Tokens signed with keys the proxy holds, minted while the provider
    // ran and never seen by the proxy before it stopped.
    let rs = w.api_token("RS256");
    w.stop_provider();
    for (what, t) in [("RS256", &rs), ("rotated ES256", &es_known)] {
        let r = w.bearer(API, "/provider-down", t, None);
        assert_eq!(
            r.status,
            200,
            "{what} with the provider down: {r:?}\n{}",
            w.proxy.log()
        );
    }
    assert_eq!(
        w.proxy
            .metric("tlsward_oidc_keys", &[("issuer", &w.issuer)]),
        3.0,
        "the keys must stay while the provider is down"
    );
}
