//! What a host's ClientAuthPolicy asks of each request beyond the client
//! certificate: a bearer token, a login session, or nothing on a public
//! path. Built once per snapshot from the policy and its Secrets; pure.

use std::fmt;
use std::sync::Arc;

use super::problem::HostError;
use crate::clientauth::{
    self, BearerTokens, BrowserLogin, CertificateBinding, ClaimHeader, GitHubLogin,
    IdentityHeaders, IdentityJoin, LoginProvider, PemSource, SignatureAlgorithm,
};
use crate::oidc::jwt::{Algorithm, Binding, ClaimRule, ClaimTest, TokenRules};
use crate::oidc::paths::{PublicPath, PublicPaths};
use crate::oidc::session::{SessionKeyError, SessionKeys};
use crate::oidc::token_cache::TokenCache;

/// Verified tokens kept per policy; each costs well under a kilobyte
/// (docs/benchmarks-oidc.md).
pub const TOKEN_CACHE_CAPACITY: usize = 100_000;

/// The reserved path prefix for the proxy's own login endpoints; requests
/// under it never reach the upstream.
pub const RESERVED_PREFIX: &str = "/.tlsward/";

/// A policy's request-time authentication.
#[derive(Debug)]
pub struct HostAuth {
    /// `ns/name` of the policy, for logs and metrics.
    pub policy: String,
    /// Bearer-token checks.
    pub tokens: Option<TokenAuth>,
    /// Browser login.
    pub login: Option<LoginAuth>,
    /// Paths that need neither.
    pub public: PublicPaths,
    /// Lower-case names of the headers this policy sets for the upstream;
    /// client-sent copies are always removed.
    pub identity_headers: Vec<String>,
    /// Whether the policy checks client certificates, so sessions are bound
    /// to the connection's certificate.
    pub checks_certificates: bool,
}

impl HostAuth {
    /// Every issuer key source the policy names (tokens, then login).
    pub fn key_sources(&self) -> impl Iterator<Item = &KeySource> {
        let tokens = self
            .tokens
            .iter()
            .flat_map(|t| t.issuers.iter().map(|i| &i.keys));
        tokens.chain(self.login.iter().filter_map(|l| l.keys.as_ref()))
    }
}

/// Where one issuer's signing keys come from; hosts that name the same
/// source share one key cache.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeySource {
    /// The issuer identifier.
    pub issuer: String,
    /// The JWKS address, when discovery is skipped.
    pub jwks_uri: Option<String>,
    /// Extra CA certificates (PEM) for the issuer's HTTPS.
    pub ca_pem: Option<String>,
}

/// One accepted issuer.
#[derive(Debug)]
pub struct IssuerAuth {
    /// Its keys.
    pub keys: KeySource,
    /// What its tokens must satisfy.
    pub rules: TokenRules,
}

/// Bearer-token settings of one policy.
#[derive(Debug)]
pub struct TokenAuth {
    /// The issuers, in policy order.
    pub issuers: Vec<IssuerAuth>,
    /// RFC 8705 binding.
    pub binding: Binding,
    /// Certificate fields that must equal claims.
    pub joins: Vec<IdentityJoin>,
    /// Claims copied to headers.
    pub claim_headers: Vec<ClaimHeader>,
    /// Whether `Authorization` goes upstream.
    pub forward_authorization: bool,
    /// The claims read per request (claim headers, identity joins): all a
    /// cached token keeps.
    pub kept_claims: Vec<String>,
    /// Verified tokens, so a signature is checked once per token.
    pub cache: Arc<TokenCache>,
}

/// Browser-login settings of one policy.
pub struct LoginAuth {
    /// OIDC or GitHub.
    pub provider: LoginProvider,
    /// The issuer (OIDC).
    pub issuer: Option<String>,
    /// GitHub's settings.
    pub github: Option<GitHubLogin>,
    /// Keys of the ID tokens' issuer (OIDC).
    pub keys: Option<KeySource>,
    /// Extra CA certificates (PEM) for the provider's HTTPS.
    pub ca_pem: Option<String>,
    /// The client ID.
    pub client_id: String,
    /// The client secret; never printed.
    pub client_secret: String,
    /// Session-cookie keys.
    pub session_keys: Arc<SessionKeys>,
    /// Scopes asked for.
    pub scopes: Vec<String>,
    /// Session lifetime, seconds.
    pub session_lifetime: i64,
    /// Keep tokens out of the cookie.
    pub minimal_session: bool,
    /// The groups claim.
    pub groups_claim: String,
    /// Rules on the identity's claims.
    pub claims: Vec<ClaimRule>,
    /// Header names for the upstream.
    pub headers: IdentityHeaders,
    /// Where logout ends.
    pub post_logout_path: String,
}

impl fmt::Debug for LoginAuth {
    // The client secret and the session keys stay out of every log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginAuth")
            .field("provider", &self.provider)
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("scopes", &self.scopes)
            .field("session_lifetime", &self.session_lifetime)
            .field("minimal_session", &self.minimal_session)
            .finish_non_exhaustive()
    }
}

/// Why a policy's token or login settings cannot be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// The login's client-secret Secret, or its key, is missing.
    #[error(
        "spec.login.clientSecretRef: Secret {secret} has no key {key:?}; create it with the client secret registered at the provider"
    )]
    ClientSecretMissing {
        /// `ns/name`.
        secret: String,
        /// The data key.
        key: String,
    },
    /// The session-key Secret is missing.
    #[error(
        "spec.login.sessionSecretRef: Secret {secret} not found; create it with a 32-byte key, e.g. kubectl create secret generic NAME --from-literal=k1=$(head -c32 /dev/urandom | base64)"
    )]
    SessionSecretMissing {
        /// `ns/name`.
        secret: String,
    },
    /// The session-key Secret holds no usable key set.
    #[error("spec.login.sessionSecretRef: Secret {secret}: {error}")]
    SessionKeys {
        /// `ns/name`.
        secret: String,
        /// Why.
        error: SessionKeyError,
    },
}

/// What the snapshot gives the builder: Secrets' data and PEM sources.
pub trait Lookup {
    /// The data of Secret `name` in the policy's namespace.
    fn secret_data(&self, name: &str) -> Option<Vec<(&str, &[u8])>>;
    /// The PEM text of a source, or why it cannot be read.
    fn pem(&self, field: String, src: &PemSource) -> Result<String, HostError>;
}

/// The policy's authentication, or `None` when it sets neither tokens nor
/// login.
pub fn build(
    policy: &clientauth::ClientAuthPolicy,
    id: &str,
    ns: &str,
    lookup: &dyn Lookup,
    previous: Option<&HostAuth>,
) -> Result<Option<HostAuth>, HostError> {
    let spec = &policy.spec;
    if spec.tokens.is_none() && spec.login.is_none() {
        return Ok(None);
    }
    let tokens = spec
        .tokens
        .as_ref()
        .map(|t| token_auth(t, lookup, previous.and_then(|p| p.tokens.as_ref())))
        .transpose()?;
    let login = spec
        .login
        .as_ref()
        .map(|l| login_auth(l, ns, lookup))
        .transpose()
        .map_err(|e| match e {
            LoginBuildError::Source(e) => e,
            LoginBuildError::Settings(error) => HostError::Auth {
                policy: id.to_string(),
                error: Arc::new(error),
            },
        })?;
    let mut identity_headers: Vec<String> = Vec::new();
    if let Some(t) = &spec.tokens {
        identity_headers.extend(
            t.claim_headers
                .iter()
                .map(|h| h.header.to_ascii_lowercase()),
        );
    }
    if let Some(l) = &spec.login {
        let h = &l.headers;
        identity_headers.extend(
            [
                Some(&h.user),
                Some(&h.email),
                Some(&h.groups),
                h.access_token.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(|n| n.to_ascii_lowercase()),
        );
    }
    identity_headers.sort();
    identity_headers.dedup();
    let public =
        PublicPaths::new(
            spec.public_paths
                .iter()
                .filter_map(|p| match (&p.exact, &p.prefix) {
                    (Some(e), _) => Some(PublicPath::Exact(e.clone())),
                    (None, Some(pre)) => Some(PublicPath::Prefix(pre.clone())),
                    (None, None) => None,
                }),
        );
    Ok(Some(HostAuth {
        policy: id.to_string(),
        tokens,
        login,
        public,
        identity_headers,
        checks_certificates: spec.checks_certificates(),
    }))
}

fn algorithm(a: SignatureAlgorithm) -> Algorithm {
    match a {
        SignatureAlgorithm::RS256 => Algorithm::RS256,
        SignatureAlgorithm::RS384 => Algorithm::RS384,
        SignatureAlgorithm::RS512 => Algorithm::RS512,
        SignatureAlgorithm::PS256 => Algorithm::PS256,
        SignatureAlgorithm::PS384 => Algorithm::PS384,
        SignatureAlgorithm::PS512 => Algorithm::PS512,
        SignatureAlgorithm::ES256 => Algorithm::ES256,
        SignatureAlgorithm::ES384 => Algorithm::ES384,
        SignatureAlgorithm::EdDSA => Algorithm::EdDSA,
    }
}

/// The algorithms a policy accepts when it names none.
pub const DEFAULT_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A CRD claim rule as the token core's.
pub fn claim_rule(r: &clientauth::ClaimRule) -> Option<ClaimRule> {
    let test = if let Some(e) = &r.equals {
        // `true`, `false` and numbers compare as JSON; anything else as text.
        let value = match serde_json::from_str::<serde_json::Value>(e) {
            Ok(v @ (serde_json::Value::Bool(_) | serde_json::Value::Number(_))) => v,
            _ => serde_json::Value::String(e.clone()),
        };
        ClaimTest::Equals(value)
    } else if let Some(c) = &r.contains {
        ClaimTest::Contains(c.clone())
    } else {
        ClaimTest::AnyOf(r.any_of.clone()?)
    };
    Some(ClaimRule {
        claim: r.claim.clone(),
        test,
    })
}

fn token_auth(
    t: &BearerTokens,
    lookup: &dyn Lookup,
    previous: Option<&TokenAuth>,
) -> Result<TokenAuth, HostError> {
    let binding = match t.certificate_binding {
        CertificateBinding::Required => Binding::Required,
        CertificateBinding::IfPresent => Binding::IfPresent,
        CertificateBinding::Ignore => Binding::Ignore,
    };
    let claims: Vec<ClaimRule> = t.claims.iter().filter_map(claim_rule).collect();
    let mut issuers = Vec::with_capacity(t.issuers.len());
    for (i, iss) in t.issuers.iter().enumerate() {
        let ca_pem = iss
            .ca
            .as_ref()
            .map(|c| lookup.pem(format!("spec.tokens.issuers[{i}].ca"), c))
            .transpose()?;
        let mut rules = TokenRules::new(iss.issuer.clone());
        rules.audiences = iss.audiences.clone();
        rules.algorithms = if iss.algorithms.is_empty() {
            DEFAULT_ALGORITHMS.to_vec()
        } else {
            iss.algorithms.iter().copied().map(algorithm).collect()
        };
        rules.clock_skew_secs = u64::from(t.clock_skew_seconds);
        rules.require_access_token_type = t.require_access_token_type;
        rules.scopes = t.scopes.clone();
        rules.claims = claims.clone();
        rules.binding = binding;
        issuers.push(IssuerAuth {
            keys: KeySource {
                issuer: iss.issuer.clone(),
                jwks_uri: iss.jwks_uri.clone(),
                ca_pem,
            },
            rules,
        });
    }
    // A verified token stays verified while the issuers and the rules that
    // verified it are the same: keep the previous snapshot's cache then.
    let cache = match previous {
        Some(p)
            if p.issuers.len() == issuers.len()
                && p.issuers
                    .iter()
                    .zip(&issuers)
                    .all(|(a, b)| a.keys == b.keys && a.rules == b.rules) =>
        {
            p.cache.clone()
        }
        _ => Arc::new(TokenCache::new(TOKEN_CACHE_CAPACITY)),
    };
    let mut kept_claims: Vec<String> = t
        .claim_headers
        .iter()
        .map(|h| h.claim.clone())
        .chain(t.identity_joins.iter().map(|j| j.claim.clone()))
        .collect();
    kept_claims.sort();
    kept_claims.dedup();
    Ok(TokenAuth {
        issuers,
        binding,
        kept_claims,
        joins: t.identity_joins.clone(),
        claim_headers: t.claim_headers.clone(),
        forward_authorization: t.forward_authorization,
        cache,
    })
}

/// Why a login's settings could not be built.
enum LoginBuildError {
    Source(HostError),
    Settings(AuthConfigError),
}

impl From<HostError> for LoginBuildError {
    fn from(e: HostError) -> Self {
        LoginBuildError::Source(e)
    }
}

impl From<AuthConfigError> for LoginBuildError {
    fn from(e: AuthConfigError) -> Self {
        LoginBuildError::Settings(e)
    }
}

fn login_auth(
    l: &BrowserLogin,
    ns: &str,
    lookup: &dyn Lookup,
) -> Result<LoginAuth, LoginBuildError> {
    let ca_pem =
        l.ca.as_ref()
            .map(|c| lookup.pem("spec.login.ca".into(), c))
            .transpose()?;
    let secret_key = l
        .client_secret_ref
        .key
        .clone()
        .unwrap_or_else(|| "client-secret".into());
    let client_secret = lookup
        .secret_data(&l.client_secret_ref.name)
        .and_then(|d| {
            d.into_iter()
                .find(|(k, _)| *k == secret_key)
                .map(|(_, v)| String::from_utf8_lossy(v).trim().to_string())
        })
        .ok_or_else(|| AuthConfigError::ClientSecretMissing {
            secret: format!("{ns}/{}", l.client_secret_ref.name),
            key: secret_key.clone(),
        })?;
    let session_secret = format!("{ns}/{}", l.session_secret_ref.name);
    let data = lookup
        .secret_data(&l.session_secret_ref.name)
        .ok_or_else(|| AuthConfigError::SessionSecretMissing {
            secret: session_secret.clone(),
        })?;
    let session_keys =
        SessionKeys::from_secret_data(data).map_err(|error| AuthConfigError::SessionKeys {
            secret: session_secret,
            error,
        })?;
    let scopes = if !l.scopes.is_empty() {
        l.scopes.clone()
    } else if l.provider == LoginProvider::GitHub {
        vec!["read:user".into(), "user:email".into(), "read:org".into()]
    } else {
        vec!["openid".into(), "email".into(), "profile".into()]
    };
    Ok(LoginAuth {
        provider: l.provider,
        issuer: l.issuer.clone(),
        github: l.github.clone(),
        keys: l.issuer.as_ref().map(|issuer| KeySource {
            issuer: issuer.clone(),
            jwks_uri: None,
            ca_pem: ca_pem.clone(),
        }),
        ca_pem,
        client_id: l.client_id.clone(),
        client_secret,
        session_keys: Arc::new(session_keys),
        scopes,
        session_lifetime: i64::from(l.session_lifetime_seconds),
        minimal_session: l.minimal_session,
        groups_claim: l.groups_claim.clone(),
        claims: l.claims.iter().filter_map(claim_rule).collect(),
        headers: l.headers.clone(),
        post_logout_path: l.post_logout_path.clone().unwrap_or_else(|| "/".into()),
    })
}
