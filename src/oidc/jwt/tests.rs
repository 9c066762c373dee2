//! Tests with real keys made at test time and real signatures.

use std::sync::OnceLock;

use aws_lc_rs::hmac;
use serde_json::{Value, json};

use super::test_signing::{TestKey, assemble, jwks_json, signing_input};
use super::*;

const ISS: &str = "https://idp.example.com/realms/shop";
const NOW: i64 = 1_767_225_600;

struct Keys {
    rsa: TestKey,
    es256: TestKey,
    es384: TestKey,
    ed: TestKey,
    /// The set: the RSA key without `alg` (so RS* and PS* all verify), the
    /// others with theirs.
    jwks: Jwks,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rsa = TestKey::generate(Algorithm::RS256, Some("rsa")).unwrap();
        let es256 = TestKey::generate(Algorithm::ES256, Some("ec256")).unwrap();
        let es384 = TestKey::generate(Algorithm::ES384, Some("ec384")).unwrap();
        let ed = TestKey::generate(Algorithm::EdDSA, Some("ed")).unwrap();
        let jwks = Jwks::from_json(&jwks_json(&[
            rsa.jwk_without_alg(),
            es256.jwk(),
            es384.jwk(),
            ed.jwk(),
        ]))
        .unwrap();
        Keys {
            rsa,
            es256,
            es384,
            ed,
            jwks,
        }
    })
}

fn claims() -> Value {
    json!({
        "iss": ISS,
        "sub": "alice",
        "aud": "shop-api",
        "exp": NOW + 300,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "scope": "openid orders:read orders:write",
        "groups": ["admins", "staff"],
        "realm_access": {"roles": ["buyer", "auditor"]},
        "email": "alice@example.com",
        "https://shop.example.com/tier": "gold",
    })
}

fn rules() -> TokenRules {
    TokenRules {
        audiences: vec!["shop-api".into()],
        ..TokenRules::new(ISS)
    }
}

fn check(token: &str, rules: &TokenRules) -> Result<Verified, TokenError> {
    verify(token, &keys().jwks, rules, NOW)
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

#[test]
fn every_algorithm_verifies_with_its_key() {
    let k = keys();
    let signers = [
        k.rsa.clone(),
        k.rsa.with_algorithm(Algorithm::RS384),
        k.rsa.with_algorithm(Algorithm::RS512),
        k.rsa.with_algorithm(Algorithm::PS256),
        k.rsa.with_algorithm(Algorithm::PS384),
        k.rsa.with_algorithm(Algorithm::PS512),
        k.es256.clone(),
        k.es384.clone(),
        k.ed.clone(),
    ];
    for signer in signers {
        let token = signer.sign(&claims()).unwrap();
        let v = check(&token, &rules()).unwrap_or_else(|e| panic!("{}: {e}", signer.algorithm()));
        assert_eq!(v.algorithm, signer.algorithm());
        assert_eq!(v.exp, NOW + 300);
        assert_eq!(v.subject(), Some("alice"));
    }
}

#[test]
fn algorithm_names_round_trip_and_refuse_none_and_hmac() {
    for a in Algorithm::ALL {
        assert_eq!(a.as_str().parse::<Algorithm>(), Ok(a));
    }
    for bad in [
        "none", "None", "HS256", "HS384", "HS512", "rs256", "ES512", "",
    ] {
        assert_eq!(bad.parse::<Algorithm>(), Err(UnsupportedAlgorithm), "{bad}");
    }
}

#[test]
fn key_set_reading() {
    let k = keys();
    assert_eq!(k.jwks.len(), 4);
    assert!(k.jwks.contains("rsa") && k.jwks.contains("ed"));
    assert!(!k.jwks.contains("nope"));
    assert!(k.jwks.skipped().is_empty());

    // 1024-bit modulus: top bit set, 128 bytes.
    let mut small_n = vec![0xc5u8; 128];
    small_n[127] |= 1;
    let mut enc_key = k.es256.jwk();
    enc_key["kid"] = json!("enc");
    enc_key["use"] = json!("enc");
    let mut wrong_alg = k.rsa.jwk();
    wrong_alg["kid"] = json!("rsa-as-ec");
    wrong_alg["alg"] = json!("ES256");
    let mut off_curve = k.es256.jwk();
    off_curve["kid"] = json!("off-curve");
    off_curve["y"] = off_curve["x"].clone();
    let doc = jwks_json(&[
        json!({"kty": "RSA", "kid": "small", "n": URL_SAFE_NO_PAD.encode(&small_n), "e": "AQAB"}),
        enc_key,
        json!({"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}),
        json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}),
        wrong_alg,
        json!({"kty": "RSA", "kid": "hs", "alg": "HS256", "n": "AQAB", "e": "AQAB"}),
        off_curve,
        json!({"kty": "RSA", "kid": "no-n", "e": "AQAB"}),
        json!("not an object"),
        k.ed.jwk(),
    ]);
    let set = Jwks::from_json(&doc).unwrap();
    assert_eq!(set.len(), 1);
    assert!(set.contains("ed"));
    let skipped: Vec<(Option<&str>, SkipReason)> = set
        .skipped()
        .iter()
        .map(|s| (s.kid.as_deref(), s.reason))
        .collect();
    assert_eq!(
        skipped,
        [
            (Some("small"), SkipReason::RsaKeySize),
            (Some("enc"), SkipReason::NotForSignatures),
            (Some("hmac"), SkipReason::UnsupportedType),
            (Some("p521"), SkipReason::UnsupportedType),
            (Some("rsa-as-ec"), SkipReason::AlgorithmMismatch),
            (Some("hs"), SkipReason::UnsupportedAlgorithm),
            (Some("off-curve"), SkipReason::Malformed),
            (Some("no-n"), SkipReason::Malformed),
            (None, SkipReason::Malformed),
        ]
    );

    for bad in [&b"{}"[..], b"[]", b"not json", b"{\"keys\": {}}"] {
        assert!(matches!(
            Jwks::from_json(bad),
            Err(JwksError::NotAJwkSet(_))
        ));
    }
    assert!(Jwks::from_json(b"{\"keys\": []}").unwrap().is_empty());
}

#[test]
fn a_token_signed_with_a_too_small_rsa_key_is_refused() {
    // The key set's only RSA key is 1024 bits: it is skipped, so its kid is
    // unknown and a token naming it cannot verify.
    let mut small_n = vec![0xc5u8; 128];
    small_n[127] |= 1;
    let set = Jwks::from_json(&jwks_json(&[
        json!({"kty": "RSA", "kid": "small", "n": URL_SAFE_NO_PAD.encode(&small_n), "e": "AQAB"}),
    ]))
    .unwrap();
    let token = assemble(
        &json!({"alg": "RS256", "kid": "small"}),
        &claims(),
        &[1; 128],
    );
    assert_eq!(
        verify(&token, &set, &rules(), NOW).unwrap_err(),
        TokenError::UnknownKey {
            kid: Some("small".into())
        }
    );
}

#[test]
fn times_are_checked_with_the_skew() {
    let k = &keys().es256;
    let at = |name: &str, t: i64| k.sign(&with(claims(), name, json!(t))).unwrap();
    // exp: good while now < exp + 60.
    assert!(check(&at("exp", NOW - 59), &rules()).is_ok());
    assert_eq!(
        check(&at("exp", NOW - 60), &rules()).unwrap_err(),
        TokenError::Expired
    );
    assert_eq!(
        check(&at("exp", NOW - 3600), &rules()).unwrap_err(),
        TokenError::Expired
    );
    // nbf and iat: good up to now + 60.
    assert!(check(&at("nbf", NOW + 60), &rules()).is_ok());
    assert_eq!(
        check(&at("nbf", NOW + 61), &rules()).unwrap_err(),
        TokenError::NotYetValid
    );
    assert!(check(&at("iat", NOW + 60), &rules()).is_ok());
    assert_eq!(
        check(&at("iat", NOW + 61), &rules()).unwrap_err(),
        TokenError::IssuedInFuture
    );
    // No skew: exactly at exp is expired.
    let strict = TokenRules {
        clock_skew_secs: 0,
        ..rules()
    };
    assert!(check(&at("exp", NOW + 1), &strict).is_ok());
    assert_eq!(
        check(&at("exp", NOW), &strict).unwrap_err(),
        TokenError::Expired
    );
    // Fractional dates round down; a huge exp saturates instead of wrapping.
    let frac = k
        .sign(&with(claims(), "exp", json!(NOW as f64 + 0.5)))
        .unwrap();
    assert_eq!(check(&frac, &strict).unwrap_err(), TokenError::Expired);
    let far = k.sign(&with(claims(), "exp", json!(1e300))).unwrap();
    assert!(check(&far, &rules()).is_ok());
    let huge_skew = TokenRules {
        clock_skew_secs: u64::MAX,
        ..rules()
    };
    assert!(check(&at("exp", i64::MAX), &huge_skew).is_ok());
}

#[test]
fn exp_is_required_and_dates_must_be_numbers() {
    let k = &keys().es256;
    let no_exp = k.sign(&without(claims(), "exp")).unwrap();
    assert!(matches!(
        check(&no_exp, &rules()),
        Err(TokenError::Malformed { .. })
    ));
    let text_exp = k.sign(&with(claims(), "exp", json!("tomorrow"))).unwrap();
    assert!(matches!(
        check(&text_exp, &rules()),
        Err(TokenError::Malformed { .. })
    ));
}

#[test]
fn issuer_must_match_exactly() {
    let k = &keys().es256;
    for iss in [
        json!("https://evil.example.com"),
        json!(format!("{ISS}/")),
        json!(1),
    ] {
        let token = k.sign(&with(claims(), "iss", iss)).unwrap();
        assert_eq!(
            check(&token, &rules()).unwrap_err(),
            TokenError::WrongIssuer
        );
    }
    let token = k.sign(&without(claims(), "iss")).unwrap();
    assert_eq!(
        check(&token, &rules()).unwrap_err(),
        TokenError::WrongIssuer
    );
}

#[test]
fn audience_string_or_array() {
    let k = &keys().es256;
    let aud = |v: Value| k.sign(&with(claims(), "aud", v)).unwrap();
    assert!(check(&aud(json!(["other", "shop-api"])), &rules()).is_ok());
    for bad in [json!("other"), json!(["a", "b"]), json!([]), json!(7)] {
        assert_eq!(
            check(&aud(bad), &rules()).unwrap_err(),
            TokenError::WrongAudience
        );
    }
    let none = k.sign(&without(claims(), "aud")).unwrap();
    assert_eq!(
        check(&none, &rules()).unwrap_err(),
        TokenError::WrongAudience
    );
    // No audience configured: not checked.
    assert!(check(&none, &TokenRules::new(ISS)).is_ok());
    // Any of several configured audiences.
    let two = TokenRules {
        audiences: vec!["x".into(), "other".into()],
        ..rules()
    };
    assert!(check(&aud(json!("other")), &two).is_ok());
}

#[test]
fn tampering_breaks_the_signature() {
    for signer in [&keys().rsa, &keys().es256, &keys().ed] {
        let token = signer.sign(&claims()).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let (header, _) = input.split_once('.').unwrap();

        let raised = with(claims(), "sub", json!("root"));
        let forged = format!(
            "{header}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(raised.to_string())
        );
        assert_eq!(
            check(&forged, &rules()).unwrap_err(),
            TokenError::BadSignature
        );

        let mut bytes = URL_SAFE_NO_PAD.decode(sig).unwrap();
        bytes[10] ^= 1;
        let flipped = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(
            check(&flipped, &rules()).unwrap_err(),
            TokenError::BadSignature
        );

        let empty = format!("{input}.");
        assert_eq!(
            check(&empty, &rules()).unwrap_err(),
            TokenError::BadSignature
        );
    }
}

#[test]
fn alg_none_and_hmac_with_the_public_key_are_refused() {
    let k = keys();
    for alg in ["none", "None", "NONE"] {
        let token = assemble(&json!({"alg": alg, "kid": "rsa"}), &claims(), b"");
        assert_eq!(
            check(&token, &rules()).unwrap_err(),
            TokenError::AlgorithmNotAllowed
        );
    }
    // The classic confusion: HMAC keyed with the RSA public key as the
    // verifier would hold it (the JWK text, and the raw modulus).
    let jwk = k.rsa.jwk().to_string();
    let n = URL_SAFE_NO_PAD
        .decode(k.rsa.jwk()["n"].as_str().unwrap())
        .unwrap();
    for secret in [jwk.as_bytes(), &n[..]] {
        for (alg, hmac_alg) in [("HS256", hmac::HMAC_SHA256), ("HS512", hmac::HMAC_SHA512)] {
            let header = json!({"alg": alg, "kid": "rsa"});
            let input = signing_input(&header, &claims());
            let tag = hmac::sign(&hmac::Key::new(hmac_alg, secret), input.as_bytes());
            let token = assemble(&header, &claims(), tag.as_ref());
            assert_eq!(
                check(&token, &rules()).unwrap_err(),
                TokenError::AlgorithmNotAllowed
            );
        }
    }
}

#[test]
fn a_key_verifies_only_its_own_algorithms() {
    let k = keys();
    // RS256 header naming the EC key, signed with the RSA key.
    let header = json!({"alg": "RS256", "kid": "ec256"});
    let token = k.rsa.sign_with_header(&header, &claims()).unwrap();
    assert_eq!(
        check(&token, &rules()).unwrap_err(),
        TokenError::KeyMismatch
    );
    // ES256 header naming the P-384 key.
    let header = json!({"alg": "ES256", "kid": "ec384"});
    let token = k.es256.sign_with_header(&header, &claims()).unwrap();
    assert_eq!(
        check(&token, &rules()).unwrap_err(),
        TokenError::KeyMismatch
    );
    // An RSA key published with alg RS256 does not verify PS256.
    let set = Jwks::from_json(&jwks_json(&[k.rsa.jwk()])).unwrap();
    let ps = k
        .rsa
        .with_algorithm(Algorithm::PS256)
        .sign(&claims())
        .unwrap();
    assert_eq!(
        verify(&ps, &set, &rules(), NOW).unwrap_err(),
        TokenError::KeyMismatch
    );
    let rs = k.rsa.sign(&claims()).unwrap();
    assert!(verify(&rs, &set, &rules(), NOW).is_ok());
}

#[test]
fn the_rules_allow_list_of_algorithms() {
    let only_es = TokenRules {
        algorithms: vec![Algorithm::ES256],
        ..rules()
    };
    let rs = keys().rsa.sign(&claims()).unwrap();
    assert_eq!(
        check(&rs, &only_es).unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
    let es = keys().es256.sign(&claims()).unwrap();
    assert!(check(&es, &only_es).is_ok());
}

#[test]
fn keys_are_found_by_kid_or_tried_without_one() {
    let k = keys();
    let header = json!({"alg": "ES256", "kid": "rotated-away"});
    let token = k.es256.sign_with_header(&header, &claims()).unwrap();
    assert_eq!(
        check(&token, &rules()).unwrap_err(),
        TokenError::UnknownKey {
            kid: Some("rotated-away".into())
        }
    );
    // No kid: every key of the algorithm is tried.
    let token = k
        .es256
        .sign_with_header(&json!({"alg": "ES256"}), &claims())
        .unwrap();
    assert!(check(&token, &rules()).is_ok());
    let rsa = k
        .rsa
        .with_algorithm(Algorithm::PS384)
        .sign_with_header(&json!({"alg": "PS384"}), &claims())
        .unwrap();
    assert!(check(&rsa, &rules()).is_ok());
    // No kid, and a key of that algorithm that did not sign it.
    let other = TestKey::generate(Algorithm::ES256, None).unwrap();
    let token = other
        .sign_with_header(&json!({"alg": "ES256"}), &claims())
        .unwrap();
    assert_eq!(
        check(&token, &rules()).unwrap_err(),
        TokenError::BadSignature
    );
    // A key set without kids.
    let set = Jwks::from_json(&jwks_json(&[other.jwk()])).unwrap();
    assert!(verify(&token, &set, &rules(), NOW).is_ok());
    let es384 = k
        .es384
        .sign_with_header(&json!({"alg": "ES384"}), &claims())
        .unwrap();
    assert_eq!(
        verify(&es384, &set, &rules(), NOW).unwrap_err(),
        TokenError::UnknownKey { kid: None }
    );
}

#[test]
fn malformed_tokens() {
    let good = keys().es256.sign(&claims()).unwrap();
    let (h, rest) = good.split_once('.').unwrap();
    let (p, s) = rest.split_once('.').unwrap();
    let cases = [
        String::new(),
        "abc".into(),
        format!("{h}.{p}"),
        format!("{h}.{p}.{s}.{s}"),
        format!("{h}=.{p}.{s}"),
        format!("{h}.{p}.{s}=="),
        format!("{h}.{p}+.{s}"),
        format!("{}.{p}.{s}", URL_SAFE_NO_PAD.encode("[1]")),
        format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode("[1]")),
        format!("{h}.{}.{s}", URL_SAFE_NO_PAD.encode("not json")),
        format!("{h}.{}.{s}", "A".repeat(MAX_TOKEN_BYTES)),
    ];
    for token in &cases {
        assert!(
            matches!(check(token, &rules()), Err(TokenError::Malformed { .. })),
            "{token:.80}"
        );
    }
    // A critical header extension nobody here understands.
    let crit = keys()
        .es256
        .sign_with_header(
            &json!({"alg": "ES256", "kid": "ec256", "crit": ["b64"], "b64": false}),
            &claims(),
        )
        .unwrap();
    assert!(matches!(
        check(&crit, &rules()),
        Err(TokenError::Malformed { .. })
    ));
}

#[test]
fn a_key_in_the_header_is_never_used() {
    // The token carries its own key (jwk) and a URL (jku): both ignored, so
    // the token's kid is unknown to the issuer's set.
    let attacker = TestKey::generate(Algorithm::ES256, Some("evil")).unwrap();
    let header = json!({
        "alg": "ES256", "kid": "evil", "jwk": attacker.jwk(),
        "jku": "https://evil.example.com/jwks",
    });
    let token = attacker.sign_with_header(&header, &claims()).unwrap();
    assert!(matches!(
        check(&token, &rules()),
        Err(TokenError::UnknownKey { .. })
    ));
}

#[test]
fn access_token_type() {
    let k = &keys().es256;
    let strict = TokenRules {
        require_access_token_type: true,
        ..rules()
    };
    let typed = |typ: Option<&str>| {
        let mut header = json!({"alg": "ES256", "kid": "ec256"});
        if let Some(t) = typ {
            header["typ"] = json!(t);
        }
        k.sign_with_header(&header, &claims()).unwrap()
    };
    for ok in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        assert!(check(&typed(Some(ok)), &strict).is_ok(), "{ok}");
    }
    for bad in [Some("JWT"), Some("id_token+jwt"), None] {
        assert_eq!(
            check(&typed(bad), &strict).unwrap_err(),
            TokenError::WrongType
        );
        assert!(check(&typed(bad), &rules()).is_ok());
    }
}

#[test]
fn scopes_from_scope_or_scp() {
    let k = &keys().es256;
    let need = |scopes: &[&str]| TokenRules {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        ..rules()
    };
    let from_scope = k.sign(&claims()).unwrap();
    assert!(check(&from_scope, &need(&["orders:read", "orders:write"])).is_ok());
    assert_eq!(
        check(&from_scope, &need(&["orders:read", "admin"])).unwrap_err(),
        TokenError::InsufficientScope
    );
    // A scope is a whole word, not a substring.
    assert_eq!(
        check(&from_scope, &need(&["orders"])).unwrap_err(),
        TokenError::InsufficientScope
    );
    let scp = k
        .sign(&with(
            without(claims(), "scope"),
            "scp",
            json!(["orders:read", "admin"]),
        ))
        .unwrap();
    assert!(check(&scp, &need(&["admin", "orders:read"])).is_ok());
    assert_eq!(
        check(&scp, &need(&["orders:write"])).unwrap_err(),
        TokenError::InsufficientScope
    );
    let none = k.sign(&without(claims(), "scope")).unwrap();
    assert_eq!(
        check(&none, &need(&["orders:read"])).unwrap_err(),
        TokenError::InsufficientScope
    );
}

#[test]
fn claim_rules() {
    let k = &keys().es256;
    let token = k.sign(&claims()).unwrap();
    let rule = |claim: &str, test: ClaimTest| TokenRules {
        claims: vec![ClaimRule {
            claim: claim.into(),
            test,
        }],
        ..rules()
    };
    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let holds = [
        rule("realm_access.roles", ClaimTest::Contains("buyer".into())),
        rule("groups", ClaimTest::Contains("admins".into())),
        rule("scope", ClaimTest::Contains("orders:read".into())),
        rule("email", ClaimTest::Contains("alice@example.com".into())),
        rule("groups", ClaimTest::AnyOf(s(&["x", "staff"]))),
        rule("sub", ClaimTest::AnyOf(s(&["alice", "bob"]))),
        rule("email", ClaimTest::Equals(json!("alice@example.com"))),
        rule(
            "realm_access",
            ClaimTest::Equals(json!({"roles": ["buyer", "auditor"]})),
        ),
        rule(
            "https://shop.example.com/tier",
            ClaimTest::Equals(json!("gold")),
        ),
    ];
    for r in &holds {
        assert!(check(&token, r).is_ok(), "{:?}", r.claims);
    }
    let fails = [
        rule("realm_access.roles", ClaimTest::Contains("admin".into())),
        rule("realm_access.missing", ClaimTest::Contains("buyer".into())),
        rule("groups", ClaimTest::Contains("admin".into())),
        rule("scope", ClaimTest::Contains("orders".into())),
        rule("groups", ClaimTest::AnyOf(s(&["x", "y"]))),
        rule("sub", ClaimTest::AnyOf(Vec::new())),
        rule("exp", ClaimTest::AnyOf(s(&["1767225900"]))),
        rule("email", ClaimTest::Equals(json!("ALICE@example.com"))),
        rule("nope", ClaimTest::Equals(Value::Null)),
        rule("sub.inner", ClaimTest::Contains("alice".into())),
    ];
    for r in &fails {
        assert_eq!(
            check(&token, r).unwrap_err(),
            TokenError::ClaimsDenied,
            "{:?}",
            r.claims
        );
    }
    // All rules must hold.
    let mut both = holds[0].clone();
    both.claims.extend(fails[2].claims.clone());
    assert_eq!(check(&token, &both).unwrap_err(), TokenError::ClaimsDenied);
}

#[test]
fn claim_strings_for_headers() {
    let v = check(&keys().ed.sign(&claims()).unwrap(), &rules()).unwrap();
    assert_eq!(v.claim_strings("sub"), ["alice"]);
    assert_eq!(v.claim_strings("realm_access.roles"), ["buyer", "auditor"]);
    assert!(v.claim_strings("exp").is_empty());
    assert!(v.claim_strings("realm_access").is_empty());
    assert!(v.claim_strings("missing").is_empty());
    assert_eq!(v.claim("exp"), Some(&json!(NOW + 300)));
    // Debug shows claim names, not values.
    let debug = format!("{v:?}");
    assert!(
        debug.contains("email") && !debug.contains("alice"),
        "{debug}"
    );
}

#[test]
fn a_cached_token_keeps_only_the_claims_read_per_request() {
    let mut v = check(&keys().ed.sign(&claims()).unwrap(), &rules()).unwrap();
    v.retain_claims(&["sub".into(), "realm_access.roles".into()]);
    assert_eq!(v.claim_strings("sub"), ["alice"]);
    assert_eq!(v.claim_strings("realm_access.roles"), ["buyer", "auditor"]);
    assert!(v.claim("email").is_none() && v.claim("exp").is_none());
    let mut none = check(&keys().ed.sign(&claims()).unwrap(), &rules()).unwrap();
    none.retain_claims(&[]);
    assert!(none.claims.is_empty());
}

#[test]
fn issuer_is_peeked_before_trusting_it() {
    let token = keys().es256.sign(&claims()).unwrap();
    assert_eq!(peek_issuer(&token).unwrap(), ISS);
    let parsed = parse(&token).unwrap();
    assert_eq!(parsed.issuer(), Some(ISS));
    assert_eq!(parsed.kid(), Some("ec256"));
    assert!(parsed.verify(&keys().jwks, &rules(), NOW).is_ok());
    // Peeking trusts nothing: a forged token still gives its iss...
    let forged = assemble(&json!({"alg": "ES256"}), &claims(), &[0; 64]);
    assert_eq!(peek_issuer(&forged).unwrap(), ISS);
    // ...and verifying it fails.
    assert_eq!(
        check(&forged, &rules()).unwrap_err(),
        TokenError::BadSignature
    );
    let no_iss = keys().es256.sign(&without(claims(), "iss")).unwrap();
    assert_eq!(peek_issuer(&no_iss).unwrap_err(), TokenError::WrongIssuer);
}

#[test]
fn certificate_binding() {
    let cert = [7u8; 32];
    let other = [8u8; 32];
    let bound_to = |hash: &[u8]| {
        let cnf = json!({"x5t#S256": URL_SAFE_NO_PAD.encode(hash)});
        check(
            &keys().es256.sign(&with(claims(), "cnf", cnf)).unwrap(),
            &rules(),
        )
        .unwrap()
    };
    let bound = bound_to(&cert);
    let unbound = check(&keys().es256.sign(&claims()).unwrap(), &rules()).unwrap();
    let dpop = check(
        &keys()
            .es256
            .sign(&with(claims(), "cnf", json!({"jkt": "abc"})))
            .unwrap(),
        &rules(),
    )
    .unwrap();
    let short = bound_to(&cert[..31]);
    assert!(bound.is_certificate_bound() && !unbound.is_certificate_bound());

    use Binding::*;
    use TokenError::*;
    type Case<'a> = (
        &'a Verified,
        Binding,
        Option<&'a [u8; 32]>,
        Result<(), TokenError>,
    );
    let cases: [Case; 17] = [
        (&bound, Required, Some(&cert), Ok(())),
        (&bound, Required, Some(&other), Err(CertBindingMismatch)),
        (&bound, Required, None, Err(ClientCertificateMissing)),
        (&unbound, Required, Some(&cert), Err(CertBindingMissing)),
        (&unbound, Required, None, Err(CertBindingMissing)),
        (&bound, IfPresent, Some(&cert), Ok(())),
        (&bound, IfPresent, Some(&other), Err(CertBindingMismatch)),
        (&bound, IfPresent, None, Err(ClientCertificateMissing)),
        (&unbound, IfPresent, Some(&cert), Ok(())),
        (&unbound, IfPresent, None, Ok(())),
        (&dpop, IfPresent, Some(&cert), Err(CertBindingMismatch)),
        (&short, IfPresent, Some(&cert), Err(CertBindingMismatch)),
        (&bound, Ignore, Some(&other), Ok(())),
        (&bound, Ignore, None, Ok(())),
        (&unbound, Ignore, None, Ok(())),
        (&dpop, Ignore, None, Ok(())),
        (&dpop, Required, Some(&cert), Err(CertBindingMismatch)),
    ];
    for (i, (v, binding, hash, want)) in cases.into_iter().enumerate() {
        assert_eq!(check_binding(v, binding, hash), want, "case {i}");
    }
}

#[test]
fn error_labels_and_answers() {
    use TokenError::*;
    let all = [
        Malformed { what: "x" },
        AlgorithmNotAllowed,
        UnknownKey {
            kid: Some("secret-ish".into()),
        },
        KeyMismatch,
        BadSignature,
        Expired,
        NotYetValid,
        IssuedInFuture,
        WrongIssuer,
        WrongAudience,
        WrongType,
        InsufficientScope,
        ClaimsDenied,
        CertBindingMissing,
        CertBindingMismatch,
        ClientCertificateMissing,
    ];
    let mut labels: Vec<&str> = all.iter().map(TokenError::reason).collect();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), all.len(), "labels are distinct");
    for e in &all {
        let (status, code, description) = e.rfc6750();
        let forbidden = matches!(e, InsufficientScope | ClaimsDenied);
        assert_eq!(status, if forbidden { 403 } else { 401 }, "{e:?}");
        assert_eq!(
            code,
            if forbidden {
                "insufficient_scope"
            } else {
                "invalid_token"
            }
        );
        // Safe inside a quoted-string of WWW-Authenticate (RFC 6750 §3).
        assert!(
            description
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        );
        assert!(!e.to_string().contains("secret-ish"));
    }
}
