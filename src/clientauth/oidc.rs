//! The OpenID Connect parts of a `ClientAuthPolicy`: bearer tokens for APIs,
//! browser login for people, and the paths that need neither.
//!
//! They live in `ClientAuthPolicy` rather than a resource of their own so
//! that one object, and one `kubectl explain`, says everything a client must
//! show to reach a host: a certificate, a token, or both.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::PemSource;

/// Bearer-token (JWT access token) checks for API clients (RFC 6750,
/// RFC 9068). A request to a bound host must carry
/// `Authorization: Bearer <token>` from one of the issuers, unless it has a
/// browser-login session or its path is public.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BearerTokens {
    /// The issuers whose tokens are accepted. A token is checked against the
    /// issuer its `iss` claim names, exactly.
    #[schemars(length(min = 1, max = 8))]
    pub issuers: Vec<TokenIssuer>,
    /// Scopes every token must grant (`scope` or `scp` claim). Missing
    /// scopes get 403 `insufficient_scope`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub scopes: Vec<String>,
    /// Rules on the token's claims; all must hold, else 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub claims: Vec<ClaimRule>,
    /// RFC 8705 certificate-bound tokens: whether the token's
    /// `cnf.x5t#S256` must match the client certificate on the connection.
    #[serde(default)]
    pub certificate_binding: CertificateBinding,
    /// Client-certificate fields that must equal a token claim, such as the
    /// certificate's email SAN and the token's `email`. Needs trustAnchors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub identity_joins: Vec<IdentityJoin>,
    /// Claims copied to request headers for the upstream. Client-sent copies
    /// of these headers are always removed first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub claim_headers: Vec<ClaimHeader>,
    /// Pass the `Authorization` header on to the upstream. Off by default:
    /// the upstream gets the checked claims, not the credential.
    #[serde(default)]
    pub forward_authorization: bool,
    /// Require the RFC 9068 access-token type (`typ: at+jwt`), so an ID
    /// token cannot be used as an access token.
    #[serde(default)]
    pub require_access_token_type: bool,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default = "default_clock_skew")]
    #[schemars(range(max = 300))]
    pub clock_skew_seconds: u32,
}

fn default_clock_skew() -> u32 {
    60
}

/// One token issuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenIssuer {
    /// The issuer identifier, compared exactly with the `iss` claim. Its
    /// keys are found through `<issuer>/.well-known/openid-configuration`
    /// unless jwksUri is set.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub issuer: String,
    /// Where the issuer's JSON Web Key Set is, when it has no discovery
    /// document (or to skip it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub jwks_uri: Option<String>,
    /// Accepted audiences: a token's `aud` must name one of them.
    #[schemars(length(min = 1, max = 16))]
    pub audiences: Vec<String>,
    /// Accepted signature algorithms. `none` and HMAC algorithms are never
    /// accepted. Omitted: RS256, PS256, ES256, ES384 and EdDSA.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<SignatureAlgorithm>,
    /// CA certificates for the issuer's HTTPS endpoints, when they are not
    /// signed by a public CA (an in-cluster Keycloak, say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PemSource>,
}

/// A JWS signature algorithm the proxy verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SignatureAlgorithm {
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
    /// Ed25519.
    EdDSA,
}

/// RFC 8705 certificate binding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CertificateBinding {
    /// Every token must carry `cnf.x5t#S256`, equal to the SHA-256 of the
    /// client certificate on the connection. Needs trustAnchors.
    Required,
    /// A token that carries `cnf.x5t#S256` must match the connection's
    /// certificate; an unbound token passes.
    #[default]
    IfPresent,
    /// `cnf` is not checked.
    Ignore,
}

/// A rule on one claim. Set exactly one of equals, contains or anyOf.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.equals), has(self.contains), has(self.anyOf)].filter(x, x).size() == 1").message("set exactly one of equals, contains or anyOf"))]
pub struct ClaimRule {
    /// The claim, as a dotted path into nested objects: `groups`,
    /// `realm_access.roles`.
    #[schemars(length(min = 1, max = 256))]
    pub claim: String,
    /// The claim equals this value (a string; `true`, `false` and numbers
    /// compare with the claim's JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<String>,
    /// The claim is a list that holds this string, or a space-separated
    /// string that holds it as a word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contains: Option<String>,
    /// The claim (or any element of a list claim) is one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub any_of: Option<Vec<String>>,
}

/// A client-certificate field that must equal a claim.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityJoin {
    /// The certificate field.
    pub certificate: CertificateField,
    /// The claim (dotted path) that must equal one of the field's values.
    #[schemars(length(min = 1, max = 256))]
    pub claim: String,
}

/// A field of the client certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CertificateField {
    /// An email (rfc822Name) subjectAltName.
    #[default]
    #[serde(rename = "SANEmail")]
    SanEmail,
    /// A DNS subjectAltName.
    #[serde(rename = "SANDNS")]
    SanDns,
    /// A URI subjectAltName.
    #[serde(rename = "SANURI")]
    SanUri,
    /// The subject common name.
    CommonName,
}

/// A claim copied to a request header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimHeader {
    /// The claim (dotted path). A list is joined with commas.
    #[schemars(length(min = 1, max = 256))]
    pub claim: String,
    /// The header name, such as `X-Auth-Subject`.
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    )]
    pub header: String,
}

/// Authorization-code login (with PKCE) for browsers, and an encrypted
/// session cookie afterwards.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.provider == 'GitHub' ? has(self.github) && !has(self.issuer) : has(self.issuer) && !has(self.github)").message("an OIDC provider needs issuer (and no github); a GitHub provider needs github (and no issuer)"))]
pub struct BrowserLogin {
    /// OIDC (default) or GitHub, which speaks OAuth 2.0 without ID tokens.
    #[serde(default)]
    pub provider: LoginProvider,
    /// The OpenID provider's issuer identifier; its discovery document names
    /// the endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub issuer: Option<String>,
    /// GitHub's endpoints and the organizations and teams allowed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub github: Option<GitHubLogin>,
    /// The client ID registered at the provider.
    #[schemars(length(min = 1, max = 512))]
    pub client_id: String,
    /// The client secret: a key of a Secret in the policy's namespace.
    /// Omitted key: `client-secret`.
    pub client_secret_ref: super::KeyRef,
    /// The Secret in the policy's namespace holding the session-cookie keys:
    /// each data key is a key id, each value 32 bytes (or their base64).
    /// With several keys, a `primary` entry names the one that seals new
    /// cookies; every key opens them, so rotate by adding a key, then
    /// switching primary, then removing the old key, and nobody is logged out.
    pub session_secret_ref: SecretName,
    /// Scopes asked for. Omitted: `openid email profile` (GitHub:
    /// `read:user user:email read:org`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub scopes: Vec<String>,
    /// How long a session lasts, in seconds, whatever the tokens say.
    #[serde(default = "default_session_lifetime")]
    #[schemars(range(min = 60, max = 2_592_000))]
    pub session_lifetime_seconds: u32,
    /// Keep only what the proxy needs in the cookie (identity, groups,
    /// expiry), not the provider's tokens: smaller cookies, no refresh.
    #[serde(default)]
    pub minimal_session: bool,
    /// The claim that lists the user's groups.
    #[serde(default = "default_groups_claim")]
    #[schemars(length(min = 1, max = 256))]
    pub groups_claim: String,
    /// Rules on the ID token's claims (or GitHub's): all must hold, else 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub claims: Vec<ClaimRule>,
    /// Headers that tell the upstream who the user is. Client-sent copies
    /// are always removed first.
    #[serde(default)]
    pub headers: IdentityHeaders,
    /// Where the browser goes after logout. Omitted: `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^/"))]
    pub post_logout_path: Option<String>,
    /// CA certificates for the provider's HTTPS endpoints, when they are not
    /// signed by a public CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PemSource>,
}

fn default_session_lifetime() -> u32 {
    8 * 3600
}

fn default_groups_claim() -> String {
    "groups".into()
}

/// Which kind of provider a login talks to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum LoginProvider {
    /// An OpenID Connect provider (Auth0, Okta, Google, Entra ID, Keycloak…).
    #[default]
    OIDC,
    /// GitHub OAuth apps: identity from GitHub's REST API.
    GitHub,
}

/// GitHub's endpoints and who may log in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitHubLogin {
    /// GitHub's web address (GitHub Enterprise: your server). Omitted:
    /// `https://github.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// GitHub's REST API address. Omitted: `https://api.github.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub api_url: Option<String>,
    /// Organizations whose members may log in. Omitted with teams: any
    /// GitHub user.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub organizations: Vec<String>,
    /// Teams (`org/team-slug`) whose members may log in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub teams: Vec<String>,
}

/// A Secret in the policy's namespace.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SecretName {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Header names for the logged-in user's identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityHeaders {
    /// The user name (`preferred_username`, else `sub`; GitHub: login).
    #[serde(default = "default_user_header")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    )]
    pub user: String,
    /// The email address.
    #[serde(default = "default_email_header")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    )]
    pub email: String,
    /// The groups, comma-separated.
    #[serde(default = "default_groups_header")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    )]
    pub groups: String,
    /// Also pass the provider's access token in this header. Omitted: not
    /// passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 128),
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9-]*$")
    )]
    pub access_token: Option<String>,
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        Self {
            user: default_user_header(),
            email: default_email_header(),
            groups: default_groups_header(),
            access_token: None,
        }
    }
}

// oauth2-proxy's names, which upstreams behind it already read.
fn default_user_header() -> String {
    "X-Auth-Request-User".into()
}

fn default_email_header() -> String {
    "X-Auth-Request-Email".into()
}

fn default_groups_header() -> String {
    "X-Auth-Request-Groups".into()
}

/// A path that needs no token and no login. Set exactly one of exact or
/// prefix. Paths are matched after normalisation (`.`/`..` segments and
/// repeated slashes resolved), so `/public/../admin` is not public.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.exact) != has(self.prefix)").message("set exactly one of exact or prefix"))]
pub struct PublicPath {
    /// The whole path, such as `/healthz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub exact: Option<String>,
    /// A path prefix, matched on segment boundaries: `/public` matches
    /// `/public` and `/public/x`, not `/publicity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub prefix: Option<String>,
}

/// What the operator last saw of one issuer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerStatus {
    /// The issuer identifier.
    pub issuer: String,
    /// How many usable signing keys its key set held.
    pub keys: u32,
    /// When its keys were last fetched (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetched: Option<String>,
}
