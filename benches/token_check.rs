//! CPU and memory cost of bearer-token checks (`tlsward::oidc::jwt` and
//! `tlsward::oidc::token_cache`), without I/O.
//!
//! ```text
//! cargo bench --bench token_check
//! ```
//!
//! Benchmarks, over an access token shaped like Keycloak's (about 1.2
//! KB: roles, scopes, e-mail, a `cnf` certificate binding) and rules
//! that check issuer, audience, `typ`, two scopes and a role:
//! - `token_check/verify_uncached_es256` and `.../verify_uncached_rs256`:
//!   one full `verify` (decode, signature, claims) with an ES256 (P-256) or
//!   RS256 (2048-bit) key;
//! - `token_check/cached_lookup`: what a request with a token seen before
//!   costs: `CacheKey::of` (SHA-256 of the token), `TokenCache::get` in a
//!   cache holding 100,000 tokens, and `check_binding`.
//!
//! Before the timed runs it fills a cache with 100,000 distinct verified
//! tokens and prints the heap bytes that added per token, counted by a
//! global allocator that tracks live bytes: once with every claim, and once
//! as the proxy caches them (only the claims read per request kept). (Under `cargo test --benches`
//! it fills 1,000, to stay quick.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::Criterion;
use serde_json::{Value, json};
use tlsward::oidc::jwt::test_signing::{TestKey, jwks_json};
use tlsward::oidc::jwt::{
    Algorithm, Binding, ClaimRule, ClaimTest, Jwks, TokenRules, check_binding, verify,
};
use tlsward::oidc::token_cache::{CacheKey, TokenCache};

/// Live heap bytes: allocations minus frees.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to `System` unchanged; only a counter is
// updated besides.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const ISS: &str = "https://sso.example.com/realms/shop";
/// 2026-01-01T00:00:00Z.
const NOW: i64 = 1_767_225_600;
/// The client certificate's SHA-256 the tokens are bound to.
const CERT: [u8; 32] = [0x5a; 32];

fn claims(i: usize) -> Value {
    use base64::Engine;
    json!({
        "exp": NOW + 300,
        "iat": NOW - 5,
        "auth_time": NOW - 5,
        "jti": format!("onrtac:6c1e3a0e-43b2-4f8f-9a4e-{i:012}"),
        "iss": ISS,
        "aud": ["orders-api", "account"],
        "sub": format!("f3b5c2d4-8e1a-4f6b-9c7d-{i:012}"),
        "typ": "Bearer",
        "azp": "storefront",
        "sid": "a3f2c1d0-5b6e-4c7d-8e9f-0a1b2c3d4e5f",
        "acr": "1",
        "allowed-origins": ["https://shop.example.com"],
        "realm_access": {"roles": ["offline_access", "uma_authorization", "buyer"]},
        "resource_access": {"account": {"roles": ["manage-account", "view-profile"]}},
        "scope": "openid profile email orders:read orders:write",
        "email_verified": true,
        "name": "Alice Example",
        "preferred_username": format!("alice{i}"),
        "given_name": "Alice",
        "family_name": "Example",
        "email": format!("alice{i}@example.com"),
        "cnf": {"x5t#S256": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(CERT)},
    })
}

fn rules() -> TokenRules {
    TokenRules {
        audiences: vec!["orders-api".into()],
        require_access_token_type: true,
        scopes: vec!["orders:read".into(), "orders:write".into()],
        claims: vec![ClaimRule {
            claim: "realm_access.roles".into(),
            test: ClaimTest::Contains("buyer".into()),
        }],
        binding: Binding::Required,
        ..TokenRules::new(ISS)
    }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let es = TestKey::generate(Algorithm::ES256, Some("es")).expect("EC key");
    let rs = TestKey::generate(Algorithm::RS256, Some("rs")).expect("RSA key");
    let jwks = Jwks::from_json(&jwks_json(&[es.jwk(), rs.jwk()])).expect("JWKS");
    let rules = rules();

    let es_token = es.sign(&claims(0)).expect("sign");
    let rs_token = rs.sign(&claims(0)).expect("sign");
    println!("token size: {} bytes (ES256)", es_token.len());
    // The fixture must verify, or the numbers mean nothing.
    let v = verify(&es_token, &jwks, &rules, NOW).expect("ES256 token verifies");
    check_binding(&v, rules.binding, Some(&CERT)).expect("bound");
    verify(&rs_token, &jwks, &rules, NOW).expect("RS256 token verifies");

    // Memory: the live heap a cache of N verified tokens adds.
    let n = if benching { 100_000 } else { 1_000 };
    let before = LIVE.load(Ordering::Relaxed);
    let cache = TokenCache::new(n + 1);
    for i in 0..n {
        let token = es.sign(&claims(i)).expect("sign");
        let v = verify(&token, &jwks, &rules, NOW).expect("verifies");
        cache.insert(CacheKey::of(&token), Arc::new(v), NOW);
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(cache.len(), n);
    println!(
        "cache of {n} verified tokens: {:.1} MiB live heap, {} bytes/token",
        (after - before) as f64 / (1024.0 * 1024.0),
        (after - before) / n as isize
    );
    // What the proxy caches: only the claims read per request (here `sub`,
    // for a claim header) are kept; the rules were checked in `verify`.
    let kept = vec!["sub".to_string()];
    let before = LIVE.load(Ordering::Relaxed);
    let slim = TokenCache::new(n + 1);
    for i in 0..n {
        let token = es.sign(&claims(i)).expect("sign");
        let mut v = verify(&token, &jwks, &rules, NOW).expect("verifies");
        v.retain_claims(&kept);
        slim.insert(CacheKey::of(&token), Arc::new(v), NOW);
    }
    let after = LIVE.load(Ordering::Relaxed);
    assert_eq!(slim.len(), n);
    println!(
        "cache of {n} verified tokens as the proxy keeps them (claims: sub): {:.1} MiB live heap, {} bytes/token",
        (after - before) as f64 / (1024.0 * 1024.0),
        (after - before) / n as isize
    );
    drop(slim);
    cache.insert(
        CacheKey::of(&es_token),
        Arc::new(verify(&es_token, &jwks, &rules, NOW).expect("verifies")),
        NOW,
    );

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("token_check");
    g.bench_function("verify_uncached_es256", |b| {
        b.iter(|| verify(black_box(&es_token), &jwks, &rules, black_box(NOW)))
    });
    g.bench_function("verify_uncached_rs256", |b| {
        b.iter(|| verify(black_box(&rs_token), &jwks, &rules, black_box(NOW)))
    });
    g.bench_function("cached_lookup", |b| {
        b.iter(|| {
            let key = CacheKey::of(black_box(&es_token));
            let hit = cache.get(&key, black_box(NOW)).expect("cached");
            check_binding(&hit, Binding::Required, Some(black_box(&CERT)))
        })
    });
    g.finish();
    c.final_summary();
}
