//! JSON Web Tokens and key sets: parsing and verification. Pure.
//!
//! Bearer access tokens (RFC 9068) signed with JWS compact serialization
//! (RFC 7515) under a key from the issuer's JWK Set (RFC 7517), checked
//! against the claims of RFC 7519 and, in a separate cheap step
//! ([`check_binding`]), against the client certificate (RFC 8705).
//!
//! Refused by construction rather than by a check that could be forgotten:
//! `alg: none` and every HMAC algorithm have no [`Algorithm`] value, so no
//! shared secret is ever made out of a public key; keys the token carries or
//! points to (`jwk`, `jku`, `x5c`, `x5u` header parameters) are never read;
//! a key verifies only the algorithms its type (and its `alg`, when the set
//! gives one) allows.
//!
//! The flow for a policy that trusts several issuers: [`parse`] the token,
//! read [`Parsed::issuer`] (not yet trusted) to pick the issuer's key set and
//! rules, then [`Parsed::verify`], which checks the `iss` again, exactly.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The largest token accepted, in bytes. Access tokens are a few hundred
/// bytes to a few KiB; the cap bounds the decoding work an attacker can ask.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The default tolerance for clock differences with the issuer.
pub const DEFAULT_CLOCK_SKEW_SECS: u64 = 60;

/// The smallest RSA modulus accepted (NIST SP 800-131A).
const MIN_RSA_BITS: usize = 2048;
/// The largest RSA modulus aws-lc-rs verifies with.
const MAX_RSA_BITS: usize = 8192;

/// A JWS signature algorithm this proxy verifies (RFC 7518 §3, RFC 8037).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519 (`kty: OKP`, `crv: Ed25519`).
    EdDSA,
}

impl Algorithm {
    /// Every algorithm, in the order a key without `alg` lists them.
    pub const ALL: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    const RSA: [Algorithm; 6] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
    ];

    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    fn rsa_parameters(self) -> Option<&'static signature::RsaParameters> {
        Some(match self {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `alg` value that is not an [`Algorithm`]: `none`, the HMAC family,
/// encryption algorithms, or anything unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unsupported JWS algorithm")]
pub struct UnsupportedAlgorithm;

impl FromStr for Algorithm {
    type Err = UnsupportedAlgorithm;

    /// Case-sensitive, as RFC 7515 §4.1.1 requires.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(UnsupportedAlgorithm)
    }
}

// ---------------------------------------------------------------------------
// Key sets

/// One usable verifying key.
struct Key {
    kid: Option<Box<str>>,
    /// The key parsed once per algorithm it may verify: one entry, or the
    /// six RSA algorithms for an RSA key without `alg`.
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
}

impl Key {
    fn verifier(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, k)| k)
    }
}

/// A parsed JSON Web Key Set: the verifying keys of one issuer.
///
/// Cheap to clone (the keys are shared). Lookup by `kid` is a scan: a set
/// holds a handful of keys, where comparing a few short strings costs less
/// than hashing one.
#[derive(Clone, Default)]
pub struct Jwks {
    keys: Arc<[Key]>,
    skipped: Arc<[SkippedKey]>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<(Option<&str>, Vec<&str>)> = self
            .keys
            .iter()
            .map(|k| {
                (
                    k.kid.as_deref(),
                    k.verifiers.iter().map(|(a, _)| a.as_str()).collect(),
                )
            })
            .collect();
        f.debug_struct("Jwks")
            .field("keys", &keys)
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// Why a key set could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The document is not a JWK Set.
    #[error("not a JWK Set: {0}")]
    NotAJwkSet(String),
}

/// A key of the set that was left out, and why: for the log line that
/// explains why a token signed with it is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedKey {
    /// The key's `kid`, if it had a readable one.
    pub kid: Option<String>,
    /// Why it was left out.
    pub reason: SkipReason,
}

/// Why a key of a set was left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// `use` is not `sig` (e.g. `enc`), or `key_ops` lacks `verify`.
    NotForSignatures,
    /// A `kty` (e.g. `oct`) or curve (e.g. P-521, Ed448) not supported.
    UnsupportedType,
    /// An `alg` that is not an [`Algorithm`].
    UnsupportedAlgorithm,
    /// An `alg` that does not fit the key type (e.g. `ES256` on an RSA key).
    AlgorithmMismatch,
    /// An RSA modulus under 2048 or over 8192 bits.
    RsaKeySize,
    /// Missing or undecodable members, or not a valid public key.
    Malformed,
}

impl SkipReason {
    /// A short label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotForSignatures => "not_for_signatures",
            SkipReason::UnsupportedType => "unsupported_type",
            SkipReason::UnsupportedAlgorithm => "unsupported_algorithm",
            SkipReason::AlgorithmMismatch => "algorithm_mismatch",
            SkipReason::RsaKeySize => "rsa_key_size",
            SkipReason::Malformed => "malformed",
        }
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

fn b64(s: Option<&String>) -> Result<Vec<u8>, SkipReason> {
    let s = s.ok_or(SkipReason::Malformed)?;
    URL_SAFE_NO_PAD.decode(s).map_err(|_| SkipReason::Malformed)
}

fn strip_leading_zeros(mut v: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = v {
        v = rest;
    }
    v
}

fn parse_key(raw: &RawKey) -> Result<Key, SkipReason> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig")
        || raw
            .key_ops
            .as_ref()
            .is_some_and(|ops| !ops.iter().any(|o| o == "verify"))
    {
        return Err(SkipReason::NotForSignatures);
    }
    let declared = match &raw.alg {
        None => None,
        Some(a) => Some(
            a.parse::<Algorithm>()
                .map_err(|_| SkipReason::UnsupportedAlgorithm)?,
        ),
    };
    let pick = |family: &[Algorithm]| -> Result<Vec<Algorithm>, SkipReason> {
        match declared {
            None => Ok(family.to_vec()),
            Some(d) if family.contains(&d) => Ok(vec![d]),
            Some(_) => Err(SkipReason::AlgorithmMismatch),
        }
    };
    let rejected = |_| SkipReason::Malformed;
    let verifiers = match raw.kty.as_str() {
        "RSA" => {
            let algs = pick(&Algorithm::RSA)?;
            let n = b64(raw.n.as_ref())?;
            let e = b64(raw.e.as_ref())?;
            // RFC 7518 asks for no leading zeros; some issuers add one.
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            if n.is_empty() || e.is_empty() {
                return Err(SkipReason::Malformed);
            }
            let bits = n.len() * 8 - n[0].leading_zeros() as usize;
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(SkipReason::RsaKeySize);
            }
            let components = RsaPublicKeyComponents { n, e };
            let mut out = Vec::with_capacity(algs.len());
            for alg in algs {
                let params = alg.rsa_parameters().ok_or(SkipReason::Malformed)?;
                out.push((
                    alg,
                    components.to_parsed_public_key(params).map_err(rejected)?,
                ));
            }
            out
        }
        "EC" => {
            let (alg, len, verification): (_, _, &'static dyn signature::VerificationAlgorithm) =
                match raw.crv.as_deref() {
                    Some("P-256") => (Algorithm::ES256, 32, &signature::ECDSA_P256_SHA256_FIXED),
                    Some("P-384") => (Algorithm::ES384, 48, &signature::ECDSA_P384_SHA384_FIXED),
                    _ => return Err(SkipReason::UnsupportedType),
                };
            pick(&[alg])?;
            let x = b64(raw.x.as_ref())?;
            let y = b64(raw.y.as_ref())?;
            if x.len() != len || y.len() != len {
                return Err(SkipReason::Malformed);
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            vec![(
                alg,
                ParsedPublicKey::new(verification, &point).map_err(rejected)?,
            )]
        }
        "OKP" => {
            if raw.crv.as_deref() != Some("Ed25519") {
                return Err(SkipReason::UnsupportedType);
            }
            pick(&[Algorithm::EdDSA])?;
            let x = b64(raw.x.as_ref())?;
            if x.len() != 32 {
                return Err(SkipReason::Malformed);
            }
            vec![(
                Algorithm::EdDSA,
                ParsedPublicKey::new(&signature::ED25519, &x).map_err(rejected)?,
            )]
        }
        _ => return Err(SkipReason::UnsupportedType),
    };
    Ok(Key {
        kid: raw.kid.as_deref().map(Box::from),
        verifiers,
    })
}

impl Jwks {
    /// Reads a JWK Set document (RFC 7517 §5). Keys this proxy cannot use
    /// (unknown `kty`, `use: enc`) are skipped, not fatal.
    pub fn from_json(bytes: &[u8]) -> Result<Jwks, JwksError> {
        let set: RawSet =
            serde_json::from_slice(bytes).map_err(|e| JwksError::NotAJwkSet(e.to_string()))?;
        let mut keys = Vec::with_capacity(set.keys.len());
        let mut skipped = Vec::new();
        for value in set.keys {
            let kid = value.get("kid").and_then(Value::as_str).map(String::from);
            let parsed = serde_json::from_value::<RawKey>(value)
                .map_err(|_| SkipReason::Malformed)
                .and_then(|raw| parse_key(&raw));
            match parsed {
                Ok(key) => keys.push(key),
                Err(reason) => skipped.push(SkippedKey { kid, reason }),
            }
        }
        Ok(Jwks {
            keys: keys.into(),
            skipped: skipped.into(),
        })
    }

    /// The number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no usable key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a key with this `kid` is in the set.
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys that were left out, and why.
    pub fn skipped(&self) -> &[SkippedKey] {
        &self.skipped
    }

    /// Checks the signature with the key the header names. With a `kid`,
    /// only keys with that `kid`; without one, every key that verifies
    /// `alg` (those without a `kid` first), so an issuer with one key and
    /// no `kid` in its tokens works.
    fn check_signature(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
        message: &[u8],
        sig: &[u8],
    ) -> Result<(), TokenError> {
        let mut tried = false;
        match kid {
            Some(kid) => {
                let mut named = false;
                for key in self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)) {
                    named = true;
                    if let Some(v) = key.verifier(alg) {
                        tried = true;
                        if v.verify_sig(message, sig).is_ok() {
                            return Ok(());
                        }
                    }
                }
                if !named {
                    return Err(TokenError::UnknownKey {
                        kid: Some(kid.to_owned()),
                    });
                }
                if !tried {
                    return Err(TokenError::KeyMismatch);
                }
            }
            None => {
                let unnamed = self.keys.iter().filter(|k| k.kid.is_none());
                let named = self.keys.iter().filter(|k| k.kid.is_some());
                for v in unnamed.chain(named).filter_map(|k| k.verifier(alg)) {
                    tried = true;
                    if v.verify_sig(message, sig).is_ok() {
                        return Ok(());
                    }
                }
                if !tried {
                    return Err(TokenError::UnknownKey { kid: None });
                }
            }
        }
        Err(TokenError::BadSignature)
    }
}

// ---------------------------------------------------------------------------
// Rules

/// What a token must satisfy, besides a good signature, for one issuer of
/// one policy.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRules {
    /// The exact `iss` (no normalisation: RFC 8414 §3.3 compares exactly).
    pub issuer: String,
    /// The token's `aud` (a string or an array) must hold one of these.
    /// Empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// The `alg` values accepted. Empty: every [`Algorithm`]; the key's type
    /// and `alg` still bind each key to its own algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Tolerance for `exp`, `nbf` and `iat`.
    pub clock_skew_secs: u64,
    /// Require the RFC 9068 header `typ: at+jwt` (or
    /// `application/at+jwt`), so an ID token is not taken for an access
    /// token.
    pub require_access_token_type: bool,
    /// Scopes that must all be granted, read from `scope` (space-separated)
    /// or `scp` (an array, or a space-separated string as Entra ID writes).
    pub scopes: Vec<String>,
    /// Claim rules that must all hold.
    pub claims: Vec<ClaimRule>,
    /// How the token must be bound to the client certificate; applied by
    /// [`check_binding`], per connection.
    pub binding: Binding,
}

impl TokenRules {
    /// Rules for `issuer` with the defaults: no audience, scope or claim
    /// requirement, every algorithm, 60 s of skew, any `typ`, binding
    /// checked when the token carries one.
    pub fn new(issuer: impl Into<String>) -> TokenRules {
        TokenRules {
            issuer: issuer.into(),
            audiences: Vec::new(),
            algorithms: Vec::new(),
            clock_skew_secs: DEFAULT_CLOCK_SKEW_SECS,
            require_access_token_type: false,
            scopes: Vec::new(),
            claims: Vec::new(),
            binding: Binding::default(),
        }
    }
}

/// Whether a token must be bound to the client certificate (RFC 8705 §3:
/// claim `cnf` member `x5t#S256`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Binding {
    /// The token must carry a binding, and it must match the certificate.
    Required,
    /// A token that carries a binding must match the certificate (RFC 8705
    /// §3 asks resource servers that support binding to do so).
    #[default]
    IfPresent,
    /// The binding is not checked.
    Ignore,
}

/// A test on one claim; the claim is found by a dotted path.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimRule {
    /// The claim: a top-level name (tried first, so namespaced claims such
    /// as `https://example.com/roles` work), else a dotted path into nested
    /// objects such as `realm_access.roles`.
    pub claim: String,
    /// What it must satisfy. A missing claim satisfies nothing.
    pub test: ClaimTest,
}

/// What a claim must satisfy.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimTest {
    /// The claim equals this JSON value.
    Equals(Value),
    /// An array holding this string, or a string equal to it or holding it
    /// as one of its space-separated words.
    Contains(String),
    /// A string in this list, or an array with at least one such string.
    AnyOf(Vec<String>),
}

impl ClaimTest {
    fn holds(&self, value: Option<&Value>) -> bool {
        let Some(value) = value else {
            return false;
        };
        match self {
            ClaimTest::Equals(want) => value == want,
            ClaimTest::Contains(want) => match value {
                Value::Array(items) => items.iter().any(|v| v.as_str() == Some(want)),
                Value::String(s) => s.split(' ').any(|w| w == want),
                _ => false,
            },
            ClaimTest::AnyOf(set) => {
                let one = |v: &Value| v.as_str().is_some_and(|s| set.iter().any(|w| w == s));
                match value {
                    Value::Array(items) => items.iter().any(one),
                    other => one(other),
                }
            }
        }
    }
}

/// Whether `rule` holds on a claims object that was verified elsewhere (an
/// ID token's, or claims read from GitHub's API).
pub fn rule_holds(rule: &ClaimRule, claims: &Map<String, Value>) -> bool {
    rule.test.holds(lookup(claims, &rule.claim))
}

/// A claim's strings (a string, or an array's strings), by name or dotted
/// path.
pub fn lookup_strings(claims: &Map<String, Value>, path: &str) -> Vec<String> {
    match lookup(claims, path) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if let Some(v) = claims.get(path) {
        return Some(v);
    }
    let mut parts = path.split('.');
    let mut v = claims.get(parts.next()?)?;
    for part in parts {
        v = v.as_object()?.get(part)?;
    }
    Some(v)
}

// ---------------------------------------------------------------------------
// Errors

/// Why a token was refused. The messages name the check, never a claim
/// value, a key id or the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a JWS compact token this proxy reads: size, parts, base64url,
    /// JSON, a `crit` header, or a missing or non-numeric `exp`.
    #[error("malformed token: {what}")]
    Malformed {
        /// Which part is wrong (a fixed phrase).
        what: &'static str,
    },
    /// The header's `alg` is not an [`Algorithm`] (`none`, `HS256`, ...) or
    /// not in the rules' list.
    #[error("token algorithm not allowed")]
    AlgorithmNotAllowed,
    /// No key in the set has the token's `kid` (or, without a `kid`, no
    /// key verifies its `alg`). The caller may refetch the key set once.
    #[error("no key for the token in the issuer's key set")]
    UnknownKey {
        /// The token's `kid`, for the refetch decision. Not in the message.
        kid: Option<String>,
    },
    /// The key named by `kid` does not verify the token's `alg` (its type
    /// or its `alg` differ): algorithm confusion.
    #[error("the token's key does not fit its algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("bad token signature")]
    BadSignature,
    /// `exp` (plus the skew) is past.
    #[error("token expired")]
    Expired,
    /// `nbf` is later than now plus the skew.
    #[error("token not yet valid")]
    NotYetValid,
    /// `iat` is later than now plus the skew.
    #[error("token issued in the future")]
    IssuedInFuture,
    /// `iss` is missing or not the expected issuer.
    #[error("wrong token issuer")]
    WrongIssuer,
    /// `aud` is missing or names none of the expected audiences.
    #[error("wrong token audience")]
    WrongAudience,
    /// The header `typ` is not `at+jwt` where the rules require it.
    #[error("not an access token (typ)")]
    WrongType,
    /// A required scope is not granted.
    #[error("insufficient scope")]
    InsufficientScope,
    /// A claim rule does not hold.
    #[error("token claims not allowed")]
    ClaimsDenied,
    /// The rules require a certificate-bound token and this one is not.
    #[error("token not bound to a client certificate")]
    CertBindingMissing,
    /// The token is bound to another certificate, or its `cnf` names a
    /// binding this proxy cannot check (such as DPoP's `jkt`).
    #[error("token bound to another client certificate")]
    CertBindingMismatch,
    /// The token is bound to a certificate and the connection has none.
    #[error("certificate-bound token without a client certificate")]
    ClientCertificateMissing,
}

impl TokenError {
    /// The metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed { .. } => "token_malformed",
            TokenError::AlgorithmNotAllowed => "algorithm_not_allowed",
            TokenError::UnknownKey { .. } => "unknown_key",
            TokenError::KeyMismatch => "key_mismatch",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::IssuedInFuture => "issued_in_future",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
            TokenError::WrongType => "wrong_type",
            TokenError::InsufficientScope => "insufficient_scope",
            TokenError::ClaimsDenied => "claims_denied",
            TokenError::CertBindingMissing => "cert_binding_missing",
            TokenError::CertBindingMismatch => "cert_binding_mismatch",
            TokenError::ClientCertificateMissing => "client_cert_missing",
        }
    }

    /// The RFC 6750 §3 answer: HTTP status, `error` code and a short
    /// `error_description` for the `WWW-Authenticate: Bearer` header.
    ///
    /// A token that is not good (malformed, forged, expired, for another
    /// issuer or audience, not an access token, or not bound to this
    /// connection's certificate, RFC 8705 §3) is `401 invalid_token`. A good
    /// token that does not grant enough is `403 insufficient_scope`: RFC
    /// 6750 defines that code as "the request requires higher privileges
    /// than provided by the access token", which fits a failed claim rule
    /// (a missing role or group) as well as a missing scope; answering 401
    /// there would make clients fetch a new token that gets no further.
    /// (A request without any token gets no `error` at all, RFC 6750 §3.1:
    /// that is the caller's case, not a `TokenError`.)
    pub fn rfc6750(&self) -> (u16, &'static str, &'static str) {
        const INVALID: &str = "invalid_token";
        const SCOPE: &str = "insufficient_scope";
        match self {
            TokenError::Malformed { .. } => (401, INVALID, "malformed token"),
            TokenError::AlgorithmNotAllowed => (401, INVALID, "algorithm not allowed"),
            TokenError::UnknownKey { .. } | TokenError::KeyMismatch => {
                (401, INVALID, "unknown signing key")
            }
            TokenError::BadSignature => (401, INVALID, "bad signature"),
            TokenError::Expired => (401, INVALID, "token expired"),
            TokenError::NotYetValid | TokenError::IssuedInFuture => {
                (401, INVALID, "token not yet valid")
            }
            TokenError::WrongIssuer => (401, INVALID, "wrong issuer"),
            TokenError::WrongAudience => (401, INVALID, "wrong audience"),
            TokenError::WrongType => (401, INVALID, "not an access token"),
            TokenError::InsufficientScope => (403, SCOPE, "insufficient scope"),
            TokenError::ClaimsDenied => (403, SCOPE, "token claims not allowed"),
            TokenError::CertBindingMissing
            | TokenError::CertBindingMismatch
            | TokenError::ClientCertificateMissing => {
                (401, INVALID, "certificate binding mismatch")
            }
        }
    }
}

const fn malformed(what: &'static str) -> TokenError {
    TokenError::Malformed { what }
}

// ---------------------------------------------------------------------------
// Parsing and verification

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// A token split and decoded, its signature not yet checked: nothing in it
/// is trusted. From [`parse`].
pub struct Parsed<'t> {
    signing_input: &'t str,
    signature: Vec<u8>,
    algorithm: Algorithm,
    kid: Option<String>,
    typ: Option<String>,
    claims: Map<String, Value>,
}

impl fmt::Debug for Parsed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Parsed")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Splits and decodes a compact JWS (RFC 7515 §7.1) and refuses what no
/// rule could accept: oversize, not three base64url parts, not JSON
/// objects, an `alg` that is not an [`Algorithm`], or a `crit` header (no
/// extension is understood, so §4.1.11 says reject).
pub fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(malformed("too large"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not three parts"));
    };
    let header = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| malformed("header encoding"))?;
    let header: Header = serde_json::from_slice(&header).map_err(|_| malformed("header"))?;
    let algorithm = header
        .alg
        .parse::<Algorithm>()
        .map_err(|_| TokenError::AlgorithmNotAllowed)?;
    if header.crit.is_some() {
        return Err(malformed("critical header extension"));
    }
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| malformed("payload encoding"))?;
    let claims: Map<String, Value> =
        serde_json::from_slice(&payload).map_err(|_| malformed("payload"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| malformed("signature encoding"))?;
    Ok(Parsed {
        signing_input: &token[..h.len() + 1 + p.len()],
        signature,
        algorithm,
        kid: header.kid,
        typ: header.typ,
        claims,
    })
}

/// The unverified `iss` of a token, to pick the issuer whose keys and rules
/// then verify it. [`parse`] then [`Parsed::issuer`] avoids decoding twice.
pub fn peek_issuer(token: &str) -> Result<String, TokenError> {
    parse(token)?
        .issuer()
        .map(String::from)
        .ok_or(TokenError::WrongIssuer)
}

/// Parses and verifies a token: see [`Parsed::verify`].
pub fn verify(
    token: &str,
    keys: &Jwks,
    rules: &TokenRules,
    now: i64,
) -> Result<Verified, TokenError> {
    parse(token)?.verify(keys, rules, now)
}

impl Parsed<'_> {
    /// The unverified `iss`.
    pub fn issuer(&self) -> Option<&str> {
        self.claims.get("iss").and_then(Value::as_str)
    }

    /// The header's `alg`.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The header's `kid`.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Verifies the token, in this order: `alg` allowed, key found,
    /// signature, then `exp` (required), `nbf`, `iat`, `iss`, `aud`, `typ`,
    /// scopes and claim rules. Nothing about the claims is reported before
    /// the signature holds. The certificate binding is left to
    /// [`check_binding`].
    pub fn verify(self, keys: &Jwks, rules: &TokenRules, now: i64) -> Result<Verified, TokenError> {
        if !rules.algorithms.is_empty() && !rules.algorithms.contains(&self.algorithm) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        keys.check_signature(
            self.kid.as_deref(),
            self.algorithm,
            self.signing_input.as_bytes(),
            &self.signature,
        )?;
        let claims = self.claims;
        let skew = i64::try_from(rules.clock_skew_secs).unwrap_or(i64::MAX);
        let exp = numeric_date(&claims, "exp")?.ok_or(malformed("no exp claim"))?;
        if now >= exp.saturating_add(skew) {
            return Err(TokenError::Expired);
        }
        let late = now.saturating_add(skew);
        if numeric_date(&claims, "nbf")?.is_some_and(|nbf| nbf > late) {
            return Err(TokenError::NotYetValid);
        }
        if numeric_date(&claims, "iat")?.is_some_and(|iat| iat > late) {
            return Err(TokenError::IssuedInFuture);
        }
        if claims.get("iss").and_then(Value::as_str) != Some(rules.issuer.as_str()) {
            return Err(TokenError::WrongIssuer);
        }
        if !rules.audiences.is_empty() && !audience_matches(claims.get("aud"), &rules.audiences) {
            return Err(TokenError::WrongAudience);
        }
        if rules.require_access_token_type
            && !self.typ.as_deref().is_some_and(|t| {
                t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
            })
        {
            return Err(TokenError::WrongType);
        }
        if !rules.scopes.is_empty() {
            let granted = granted_scopes(&claims);
            if !rules.scopes.iter().all(|s| granted.contains(&s.as_str())) {
                return Err(TokenError::InsufficientScope);
            }
        }
        if !rules
            .claims
            .iter()
            .all(|r| r.test.holds(lookup(&claims, &r.claim)))
        {
            return Err(TokenError::ClaimsDenied);
        }
        let binding = CertBinding::of(&claims);
        Ok(Verified {
            claims,
            exp,
            algorithm: self.algorithm,
            binding,
        })
    }
}

/// A NumericDate claim (RFC 7519 §2): seconds, possibly fractional
/// (rounded down).
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(i) => Ok(Some(i)),
            // Saturating: a date past i64 is "never" either way.
            None => n
                .as_f64()
                .map(|f| Some(f.floor() as i64))
                .ok_or(malformed("date claim")),
        },
        Some(_) => Err(malformed("date claim")),
    }
}

fn audience_matches(aud: Option<&Value>, wanted: &[String]) -> bool {
    let one = |v: &Value| v.as_str().is_some_and(|a| wanted.iter().any(|w| w == a));
    match aud {
        Some(Value::Array(items)) => items.iter().any(one),
        Some(v) => one(v),
        None => false,
    }
}

fn granted_scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scope", "scp"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|w| !w.is_empty())),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// The token's certificate binding, decoded once at verification so the
/// per-connection check is a comparison.
#[derive(Clone, Debug, PartialEq, Eq)]
enum CertBinding {
    /// No `cnf` claim.
    None,
    /// `cnf.x5t#S256`, decoded.
    Sha256([u8; 32]),
    /// A `cnf` without a usable `x5t#S256`: bound to something this proxy
    /// cannot check, so it never matches.
    Unusable,
}

impl CertBinding {
    fn of(claims: &Map<String, Value>) -> CertBinding {
        let Some(cnf) = claims.get("cnf") else {
            return CertBinding::None;
        };
        cnf.get("x5t#S256")
            .and_then(Value::as_str)
            .and_then(|t| URL_SAFE_NO_PAD.decode(t).ok())
            .and_then(|d| <[u8; 32]>::try_from(d).ok())
            .map_or(CertBinding::Unusable, CertBinding::Sha256)
    }
}

/// A token whose signature and claims were checked. Its claims are the
/// issuer's word from here on.
#[derive(Clone)]
pub struct Verified {
    /// The token's claims.
    pub claims: Map<String, Value>,
    /// `exp`: the token is not good at or after this instant (plus skew);
    /// a cache keeps it until then.
    pub exp: i64,
    /// The algorithm it was signed with.
    pub algorithm: Algorithm,
    binding: CertBinding,
}

impl fmt::Debug for Verified {
    // The claim names only: the values are personal data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("claims", &self.claims.keys().collect::<Vec<_>>())
            .field("exp", &self.exp)
            .field("algorithm", &self.algorithm)
            .field("certificate_bound", &self.is_certificate_bound())
            .finish()
    }
}

impl Verified {
    /// A claim by name or dotted path (see [`ClaimRule::claim`]).
    pub fn claim(&self, path: &str) -> Option<&Value> {
        lookup(&self.claims, path)
    }

    /// A claim's strings, for upstream headers and identity joins: a string
    /// gives itself, an array its string elements; anything else (numbers,
    /// booleans, objects, a missing claim) gives nothing.
    pub fn claim_strings(&self, path: &str) -> Vec<&str> {
        match self.claim(path) {
            Some(Value::String(s)) => vec![s.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }

    /// Drops every claim that none of `paths` (names or dotted paths, as
    /// [`Verified::claim`] reads them) needs. The rules were checked in
    /// `verify`; a cached token only has to keep what is read per request,
    /// and a JSON object costs far more memory than the token's text.
    pub fn retain_claims(&mut self, paths: &[String]) {
        self.claims.retain(|name, _| {
            paths
                .iter()
                .any(|p| p == name || p.split('.').next() == Some(name.as_str()))
        });
    }

    /// `sub`, if it is a string.
    pub fn subject(&self) -> Option<&str> {
        self.claims.get("sub").and_then(Value::as_str)
    }

    /// Whether the token carries a `cnf` claim.
    pub fn is_certificate_bound(&self) -> bool {
        self.binding != CertBinding::None
    }
}

/// Checks a verified token's certificate binding against the connection's
/// client certificate (the SHA-256 of its DER). Separate from
/// [`Parsed::verify`] because a cached token may arrive on any connection.
pub fn check_binding(
    verified: &Verified,
    binding: Binding,
    client_cert_sha256: Option<&[u8; 32]>,
) -> Result<(), TokenError> {
    if binding == Binding::Ignore {
        return Ok(());
    }
    match &verified.binding {
        CertBinding::None if binding == Binding::Required => Err(TokenError::CertBindingMissing),
        CertBinding::None => Ok(()),
        CertBinding::Unusable => Err(TokenError::CertBindingMismatch),
        CertBinding::Sha256(want) => {
            let have = client_cert_sha256.ok_or(TokenError::ClientCertificateMissing)?;
            verify_slices_are_equal(want, have).map_err(|_| TokenError::CertBindingMismatch)
        }
    }
}

// ---------------------------------------------------------------------------
// Test support

/// Signing tokens with keys made on the spot, for tests and benchmarks.
/// Errors are aws-lc-rs' opaque `Unspecified`.
#[doc(hidden)]
pub mod test_signing {
    use std::sync::Arc;

    use aws_lc_rs::error::Unspecified;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    use super::Algorithm;

    enum Pair {
        Rsa(RsaKeyPair),
        Ec(EcdsaKeyPair),
        Ed(Ed25519KeyPair),
    }

    /// A private key and the algorithm it signs with.
    #[derive(Clone)]
    pub struct TestKey {
        alg: Algorithm,
        kid: Option<String>,
        pair: Arc<Pair>,
    }

    impl TestKey {
        /// A new key for `alg` (RSA 2048 bits for RS*/PS*).
        pub fn generate(alg: Algorithm, kid: Option<&str>) -> Result<TestKey, Unspecified> {
            let pair = match alg {
                Algorithm::ES256 => Pair::Ec(EcdsaKeyPair::generate(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                )?),
                Algorithm::ES384 => Pair::Ec(EcdsaKeyPair::generate(
                    &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                )?),
                Algorithm::EdDSA => Pair::Ed(Ed25519KeyPair::generate()?),
                _ => Pair::Rsa(RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)?),
            };
            Ok(TestKey {
                alg,
                kid: kid.map(String::from),
                pair: Arc::new(pair),
            })
        }

        /// The same key signing with another algorithm of its family (an
        /// RSA key for PS256 as well as RS256).
        pub fn with_algorithm(&self, alg: Algorithm) -> TestKey {
            TestKey {
                alg,
                ..self.clone()
            }
        }

        /// The algorithm it signs with.
        pub fn algorithm(&self) -> Algorithm {
            self.alg
        }

        /// Its public JWK, with `kid` (if any), `use: sig` and `alg`.
        pub fn jwk(&self) -> Value {
            let mut jwk = self.jwk_without_alg();
            jwk["alg"] = json!(self.alg.as_str());
            jwk
        }

        /// Its public JWK without `alg`.
        pub fn jwk_without_alg(&self) -> Value {
            let enc = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
            let mut jwk = match &*self.pair {
                Pair::Rsa(k) => {
                    let p = k.public_key();
                    json!({
                        "kty": "RSA",
                        "n": enc(p.modulus().big_endian_without_leading_zero()),
                        "e": enc(p.exponent().big_endian_without_leading_zero()),
                    })
                }
                Pair::Ec(k) => {
                    let point = k.public_key().as_ref();
                    let len = (point.len() - 1) / 2;
                    let crv = if len == 32 { "P-256" } else { "P-384" };
                    json!({
                        "kty": "EC",
                        "crv": crv,
                        "x": enc(&point[1..1 + len]),
                        "y": enc(&point[1 + len..]),
                    })
                }
                Pair::Ed(k) => json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": enc(k.public_key().as_ref()),
                }),
            };
            jwk["use"] = json!("sig");
            if let Some(kid) = &self.kid {
                jwk["kid"] = json!(kid);
            }
            jwk
        }

        /// A token for `claims`, with header `alg`, `typ: at+jwt` and `kid`.
        pub fn sign(&self, claims: &Value) -> Result<String, Unspecified> {
            let mut header = json!({"alg": self.alg.as_str(), "typ": "at+jwt"});
            if let Some(kid) = &self.kid {
                header["kid"] = json!(kid);
            }
            self.sign_with_header(&header, claims)
        }

        /// A token with this exact header (which may lie about `alg` or
        /// `kid`), signed with this key's algorithm.
        pub fn sign_with_header(
            &self,
            header: &Value,
            claims: &Value,
        ) -> Result<String, Unspecified> {
            let input = signing_input(header, claims);
            let sig = self.signature(input.as_bytes())?;
            Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
        }

        fn signature(&self, message: &[u8]) -> Result<Vec<u8>, Unspecified> {
            let rng = SystemRandom::new();
            match &*self.pair {
                Pair::Rsa(k) => {
                    let encoding: &'static dyn signature::RsaEncoding = match self.alg {
                        Algorithm::RS256 => &signature::RSA_PKCS1_SHA256,
                        Algorithm::RS384 => &signature::RSA_PKCS1_SHA384,
                        Algorithm::RS512 => &signature::RSA_PKCS1_SHA512,
                        Algorithm::PS256 => &signature::RSA_PSS_SHA256,
                        Algorithm::PS384 => &signature::RSA_PSS_SHA384,
                        Algorithm::PS512 => &signature::RSA_PSS_SHA512,
                        _ => return Err(Unspecified),
                    };
                    let mut sig = vec![0; k.public_modulus_len()];
                    k.sign(encoding, &rng, message, &mut sig)?;
                    Ok(sig)
                }
                Pair::Ec(k) => Ok(k.sign(&rng, message)?.as_ref().to_vec()),
                Pair::Ed(k) => Ok(k.sign(message).as_ref().to_vec()),
            }
        }
    }

    /// `base64url(header) "." base64url(claims)`.
    pub fn signing_input(header: &Value, claims: &Value) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    /// A token with any signature bytes, to forge `alg: none` or HMAC
    /// tokens.
    pub fn assemble(header: &Value, claims: &Value, signature: &[u8]) -> String {
        format!(
            "{}.{}",
            signing_input(header, claims),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    /// A JWK Set document holding these JWKs.
    pub fn jwks_json(keys: &[Value]) -> Vec<u8> {
        json!({ "keys": keys }).to_string().into_bytes()
    }
}

#[cfg(test)]
mod tests;
