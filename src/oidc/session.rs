//! Encrypted session cookies for browser login. Pure: keys, header values
//! and `now` in, header values out.
//!
//! A [`Session`] is compact JSON sealed with AES-256-GCM under the primary
//! key of a [`SessionKeys`] set, and written as
//! `v1.<key id>.<base64url(nonce || ciphertext || tag)>`. The additional
//! authenticated data names the cookie's purpose and host, so a value
//! sealed for another host, or a login-flow cookie, does not open as a
//! session here. A session too large for one cookie is split over
//! `__Host-<base>-0`, `-1`, …, each `Set-Cookie` value under 4096 bytes.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

/// The length of one session key: AES-256.
pub const KEY_LEN: usize = 32;

/// The Secret data entry that names the key id which seals.
pub const PRIMARY_ENTRY: &str = "primary";

/// Every `Set-Cookie` value this module writes is shorter than this,
/// attributes included: browsers drop larger cookies without a word.
pub const MAX_SET_COOKIE_LEN: usize = 4096;

/// At most this many chunks per session (about 30 KiB). Past it sealing
/// fails with [`SessionError::TooLarge`]: use [`Session::minimal`].
pub const MAX_CHUNKS: usize = 8;

/// Login-flow cookies start with this; they never reach the upstream either.
pub const FLOW_COOKIE_PREFIX: &str = "__Host-tlsward-flow-";

const VERSION: &str = "v1";
const MAX_KID_LEN: usize = 32;
const TAG_LEN: usize = 16;
const ATTRIBUTES: &str = "; Path=/; Secure; HttpOnly; SameSite=Lax";

/// What a sealed value is for; part of the additional authenticated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    Session,
    Flow,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::Session => "session",
            Purpose::Flow => "flow",
        }
    }
}

/// The keys that seal and open cookies: the first seals, every one opens,
/// so a key can be rotated without logging everyone out.
///
/// Read from a Secret's data with [`SessionKeys::from_secret_data`]:
///
/// - each entry other than `primary` is one key: its name is the key id
///   (1 to 32 letters, digits, `-` or `_`; it is written into every
///   cookie) and its value is 32 random bytes, either raw (exactly 32
///   bytes) or base64 of them (standard or URL-safe alphabet, padding and
///   surrounding whitespace allowed), as `openssl rand -base64 32` prints;
/// - `primary` holds the id of the key that seals new cookies. It may be
///   left out while the Secret holds a single key, and is required once it
///   holds several.
///
/// Rotation is then three edits, each rolled out before the next: add the
/// new key (every replica can now open it), point `primary` at it (new
/// cookies use it), and remove the old key once the longest session
/// sealed with it has ended. Cookies sealed with a removed key fail with
/// [`SessionError::UnknownKey`] and their users log in again.
pub struct SessionKeys {
    keys: Vec<(String, RandomizedNonceKey)>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: key material never reaches a log.
        let ids: Vec<&str> = self.keys.iter().map(|(kid, _)| kid.as_str()).collect();
        f.debug_struct("SessionKeys").field("ids", &ids).finish()
    }
}

/// Why a session-key Secret could not be used. The messages name the data
/// entry and the fix, never key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionKeyError {
    /// The Secret holds no key entry.
    #[error(
        "the session-key Secret holds no key: add a data entry named by a key id (e.g. `k1`) holding 32 random bytes, e.g. the output of `openssl rand -base64 32`"
    )]
    NoKeys,
    /// A data entry's name cannot be a key id.
    #[error(
        "session-key Secret entry `{kid}`: a key id is 1 to 32 letters, digits, `-` or `_` (it is written into every cookie); rename the entry"
    )]
    BadKeyId {
        /// The entry's name.
        kid: String,
    },
    /// A data entry's value is not a 32-byte key.
    #[error(
        "session-key Secret entry `{kid}` is not a 32-byte key ({len} bytes after decoding): store 32 raw bytes or their base64, e.g. the output of `openssl rand -base64 32`"
    )]
    BadKey {
        /// The entry's name.
        kid: String,
        /// The length found, raw or after base64 decoding.
        len: usize,
    },
    /// Several keys and no `primary` entry saying which one seals.
    #[error(
        "the session-key Secret holds several keys ({kids}) and no `primary` entry: set `primary` to the id of the key that should seal new cookies"
    )]
    PrimaryMissing {
        /// The key ids found, comma-separated.
        kids: String,
    },
    /// `primary` names a key id the Secret does not hold.
    #[error(
        "the session-key Secret's `primary` entry names `{primary}`, which is not one of its keys ({kids}): add that key or correct `primary`"
    )]
    PrimaryUnknown {
        /// The value of `primary`.
        primary: String,
        /// The key ids found, comma-separated.
        kids: String,
    },
}

fn valid_kid(kid: &str) -> bool {
    (1..=MAX_KID_LEN).contains(&kid.len())
        && kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 32 raw bytes, or base64 of 32 bytes in any common spelling.
fn decode_key(value: &[u8]) -> Result<[u8; KEY_LEN], usize> {
    if let Ok(raw) = <[u8; KEY_LEN]>::try_from(value) {
        return Ok(raw);
    }
    let text = value.trim_ascii();
    let mut len = value.len();
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(bytes) = engine.decode(text) {
            len = bytes.len();
            if let Ok(key) = <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
                return Ok(key);
            }
        }
    }
    Err(len)
}

impl SessionKeys {
    /// Keys from id and bytes; the first seals. Fails on a bad key id or
    /// an empty list.
    pub fn new(keys: Vec<(String, [u8; KEY_LEN])>) -> Result<SessionKeys, SessionKeyError> {
        if keys.is_empty() {
            return Err(SessionKeyError::NoKeys);
        }
        let mut out = Vec::with_capacity(keys.len());
        for (kid, bytes) in keys {
            if !valid_kid(&kid) {
                return Err(SessionKeyError::BadKeyId { kid });
            }
            let key = RandomizedNonceKey::new(&AES_256_GCM, &bytes).map_err(|_| {
                SessionKeyError::BadKey {
                    kid: kid.clone(),
                    len: bytes.len(),
                }
            })?;
            out.push((kid, key));
        }
        Ok(SessionKeys { keys: out })
    }

    /// Reads a Secret's `data` (already base64-decoded by the API client);
    /// the format is described on [`SessionKeys`].
    pub fn from_secret_data<'a>(
        data: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<SessionKeys, SessionKeyError> {
        let mut primary = None;
        let mut found = BTreeMap::new();
        for (name, value) in data {
            if name == PRIMARY_ENTRY {
                primary = Some(String::from_utf8_lossy(value).trim().to_string());
                continue;
            }
            if !valid_kid(name) {
                return Err(SessionKeyError::BadKeyId {
                    kid: name.to_string(),
                });
            }
            let key = decode_key(value).map_err(|len| SessionKeyError::BadKey {
                kid: name.to_string(),
                len,
            })?;
            found.insert(name.to_string(), key);
        }
        let kids = || found.keys().cloned().collect::<Vec<_>>().join(", ");
        let first = match primary {
            Some(p) if found.contains_key(&p) => p,
            Some(p) => {
                return Err(SessionKeyError::PrimaryUnknown {
                    primary: p,
                    kids: kids(),
                });
            }
            None if found.len() > 1 => {
                return Err(SessionKeyError::PrimaryMissing { kids: kids() });
            }
            None => match found.keys().next() {
                Some(only) => only.clone(),
                None => return Err(SessionKeyError::NoKeys),
            },
        };
        let mut keys = Vec::with_capacity(found.len());
        if let Some(bytes) = found.remove(&first) {
            keys.push((first, bytes));
        }
        keys.extend(found);
        SessionKeys::new(keys)
    }

    /// The id of the key that seals.
    pub fn primary_id(&self) -> &str {
        self.keys.first().map_or("", |(kid, _)| kid.as_str())
    }

    fn find(&self, kid: &str) -> Option<&RandomizedNonceKey> {
        self.keys.iter().find(|(k, _)| k == kid).map(|(_, key)| key)
    }
}

/// Why a session (or flow) cookie was not accepted, or could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionError {
    /// The request carries no session cookie.
    #[error("no session cookie")]
    Missing,
    /// The cookie failed authentication: altered, or sealed for another
    /// host or purpose.
    #[error("the session cookie failed authentication")]
    Tampered,
    /// The cookie names a key id this set does not hold: a removed key, or
    /// a cookie from another deployment.
    #[error("the session cookie was sealed with a key this proxy does not hold")]
    UnknownKey,
    /// The session has ended.
    #[error("the session has expired")]
    Expired,
    /// The cookie is not in this module's format.
    #[error("malformed session cookie: {0}")]
    Malformed(&'static str),
    /// The session does not fit in [`MAX_CHUNKS`] cookies.
    #[error("the session does not fit in {MAX_CHUNKS} cookies: seal Session::minimal instead")]
    TooLarge,
    /// The system's random source or the cipher failed.
    #[error("sealing the cookie failed")]
    Crypto,
}

fn aad(purpose: Purpose, host: &str, kid: &str) -> Vec<u8> {
    format!(
        "tlsward|{VERSION}|{}|{}|{kid}",
        purpose.as_str(),
        host.to_ascii_lowercase()
    )
    .into_bytes()
}

/// Seals `plaintext` under the primary key: `v1.<kid>.<base64url>`.
pub(crate) fn seal(
    keys: &SessionKeys,
    purpose: Purpose,
    host: &str,
    plaintext: &[u8],
) -> Result<String, SessionError> {
    let (kid, key) = keys.keys.first().ok_or(SessionError::Crypto)?;
    let mut in_out = plaintext.to_vec();
    let nonce = key
        .seal_in_place_append_tag(Aad::from(aad(purpose, host, kid)), &mut in_out)
        .map_err(|_| SessionError::Crypto)?;
    let mut body = Vec::with_capacity(NONCE_LEN + in_out.len());
    body.extend_from_slice(nonce.as_ref());
    body.extend_from_slice(&in_out);
    Ok(format!("{VERSION}.{kid}.{}", URL_SAFE_NO_PAD.encode(body)))
}

/// Opens a value [`seal`] wrote for the same purpose and host.
pub(crate) fn open(
    keys: &SessionKeys,
    purpose: Purpose,
    host: &str,
    value: &str,
) -> Result<Vec<u8>, SessionError> {
    let mut parts = value.splitn(3, '.');
    let (Some(version), Some(kid), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SessionError::Malformed("not version.key.body"));
    };
    if version != VERSION {
        return Err(SessionError::Malformed("unknown version"));
    }
    let key = keys.find(kid).ok_or(SessionError::UnknownKey)?;
    let mut bytes = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| SessionError::Malformed("body is not base64url"))?;
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return Err(SessionError::Malformed("body too short"));
    }
    let (nonce, sealed) = bytes.split_at_mut(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SessionError::Tampered)?;
    let plain = key
        .open_in_place(nonce, Aad::from(aad(purpose, host, kid)), sealed)
        .map_err(|_| SessionError::Tampered)?;
    Ok(plain.to_vec())
}

/// Who is logged in, and what the proxy needs to authorise and forward
/// their requests. Stored in the cookie as compact JSON.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The ID token's `sub`.
    #[serde(rename = "s")]
    pub sub: String,
    /// `preferred_username`, else `sub`: the name shown and forwarded.
    #[serde(rename = "u")]
    pub user: String,
    /// The `email` claim.
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// The `groups` claim.
    #[serde(rename = "g", default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The IdP's session id (`sid`), for back-channel logout.
    #[serde(rename = "sid", default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The issuer that authenticated the user.
    #[serde(rename = "i")]
    pub iss: String,
    /// When the session began (Unix seconds).
    #[serde(rename = "ia")]
    pub issued_at: i64,
    /// When the session ends (Unix seconds); the cookie's Max-Age follows it.
    #[serde(rename = "x")]
    pub expires_at: i64,
    /// The access token, forwarded upstream where configured.
    #[serde(rename = "at", default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// When the access token expires (Unix seconds).
    #[serde(rename = "ax", default, skip_serializing_if = "Option::is_none")]
    pub access_token_expires_at: Option<i64>,
    /// The refresh token.
    #[serde(rename = "rt", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// The raw ID token, kept as the `id_token_hint` for RP-initiated logout.
    #[serde(rename = "it", default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// SHA-256 of the client certificate (DER) the session is bound to.
    #[serde(
        rename = "c",
        default,
        skip_serializing_if = "Option::is_none",
        with = "thumbprint"
    )]
    pub cert_sha256: Option<[u8; 32]>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are secrets: say whether they are there, not what they are.
        f.debug_struct("Session")
            .field("sub", &self.sub)
            .field("user", &self.user)
            .field("email", &self.email)
            .field("groups", &self.groups.len())
            .field("sid", &self.sid)
            .field("iss", &self.iss)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("access_token", &self.access_token.is_some())
            .field("access_token_expires_at", &self.access_token_expires_at)
            .field("refresh_token", &self.refresh_token.is_some())
            .field("id_token", &self.id_token.is_some())
            .field("cert_bound", &self.cert_sha256.is_some())
            .finish()
    }
}

impl Session {
    /// Only what the proxy needs to authorise and forward: identity,
    /// groups, `sid`, issuer, lifetime and certificate binding; no tokens.
    /// For a session too large to store whole.
    pub fn minimal(&self) -> Session {
        Session {
            access_token: None,
            access_token_expires_at: None,
            refresh_token: None,
            id_token: None,
            ..self.clone()
        }
    }

    /// Whether a request on a connection with this client certificate
    /// (its SHA-256, if any) may use the session: a bound session needs
    /// the same certificate; an unbound one takes any connection.
    pub fn bound_to(&self, cert_sha256: Option<&[u8; 32]>) -> bool {
        match (&self.cert_sha256, cert_sha256) {
            (None, _) => true,
            (Some(bound), Some(presented)) => verify_slices_are_equal(bound, presented).is_ok(),
            (Some(_), None) => false,
        }
    }
}

/// `Option<[u8; 32]>` as unpadded base64url.
mod thumbprint {
    use super::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&URL_SAFE_NO_PAD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<[u8; 32]>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(D::Error::custom)?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Some)
            .map_err(|_| D::Error::custom("thumbprint is not 32 bytes"))
    }
}

/// The `name=value` pairs of a `Cookie` header, in order: pairs separated
/// by `;` with optional spaces or tabs, the name up to the first `=`, a
/// value in double quotes unquoted. Pieces without `=` or with an empty
/// name are skipped.
pub fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str)> {
    header.split(';').filter_map(|piece| {
        let (name, value) = piece.split_once('=')?;
        let name = name.trim_matches([' ', '\t']);
        if name.is_empty() {
            return None;
        }
        let value = value.trim_matches([' ', '\t']);
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Some((name, value))
    })
}

/// The cookie name of the unsplit session.
fn single_name(base: &str) -> String {
    format!("__Host-{base}")
}

/// Which of our cookies a name is: the unsplit one, or chunk `i`.
enum Ours {
    Single,
    Chunk(usize),
}

fn classify(name: &str, base: &str) -> Option<Ours> {
    let rest = name.strip_prefix("__Host-")?.strip_prefix(base)?;
    if rest.is_empty() {
        return Some(Ours::Single);
    }
    let digits = rest.strip_prefix('-')?;
    let canonical = !digits.is_empty()
        && digits.len() <= 3
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    digits.parse().ok().map(Ours::Chunk)
}

/// A `Set-Cookie` value that removes cookie `name`.
pub fn expire_cookie(name: &str) -> String {
    format!("{name}={ATTRIBUTES}; Max-Age=0")
}

/// `Set-Cookie` values that remove every session cookie (and chunk) the
/// request carries: for logout, or a session that failed to open.
pub fn clear_cookies<'a>(
    cookie_headers: impl IntoIterator<Item = &'a str>,
    base: &str,
) -> Vec<String> {
    let mut names: Vec<&str> = Vec::new();
    for header in cookie_headers {
        for (name, _) in cookie_pairs(header) {
            if classify(name, base).is_some() && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.into_iter().map(expire_cookie).collect()
}

/// The `Set-Cookie` values that store `session` for `host`: one
/// `__Host-<base>` cookie when it fits, else chunks `__Host-<base>-0` …
/// (chunk 0's value starts with the chunk count and `:`). Cookies of ours
/// that `existing_cookie_header` (the request's `Cookie` header values,
/// joined) carries and this session no longer uses are expired, so a
/// shrinking session leaves no stale chunk behind.
pub fn seal_cookies(
    keys: &SessionKeys,
    host: &str,
    session: &Session,
    base: &str,
    existing_cookie_header: &str,
    now: i64,
) -> Result<Vec<String>, SessionError> {
    let max_age = session.expires_at.saturating_sub(now);
    if max_age <= 0 {
        return Err(SessionError::Expired);
    }
    let json =
        serde_json::to_vec(session).map_err(|_| SessionError::Malformed("unserialisable"))?;
    let sealed = seal(keys, Purpose::Session, host, &json)?;
    let attributes = format!("{ATTRIBUTES}; Max-Age={max_age}");
    let mut out = Vec::new();
    let mut used: Vec<String> = Vec::new();
    let single = single_name(base);
    if single.len() + 1 + sealed.len() + attributes.len() < MAX_SET_COOKIE_LEN {
        out.push(format!("{single}={sealed}{attributes}"));
        used.push(single);
    } else {
        // Chunk names are `__Host-<base>-<i>` with one digit (MAX_CHUNKS ≤ 10).
        let name_len = single.len() + 2;
        let budget = (MAX_SET_COOKIE_LEN - 1)
            .checked_sub(name_len + 1 + attributes.len())
            .filter(|b| *b > 8)
            .ok_or(SessionError::TooLarge)?;
        let count = (2..=MAX_CHUNKS)
            .find(|n| n * budget > sealed.len() + n.to_string().len())
            .ok_or(SessionError::TooLarge)?;
        let mut rest = sealed.as_str();
        for i in 0..count {
            let prefix = if i == 0 {
                format!("{count}:")
            } else {
                String::new()
            };
            // `sealed` is ASCII, so any byte index is a char boundary.
            let take = rest.len().min(budget - prefix.len());
            let (part, tail) = rest.split_at(take);
            rest = tail;
            let name = format!("{single}-{i}");
            out.push(format!("{name}={prefix}{part}{attributes}"));
            used.push(name);
        }
    }
    for (name, _) in cookie_pairs(existing_cookie_header) {
        if classify(name, base).is_some() && !used.iter().any(|u| u == name) {
            used.push(name.to_string());
            out.push(expire_cookie(name));
        }
    }
    Ok(out)
}

/// Reassembles, opens and checks the session the request's `Cookie`
/// header values carry for `host`. The unsplit cookie wins over chunks;
/// chunks past the count chunk 0 gives are stale and ignored.
pub fn open_cookies<'a>(
    keys: &SessionKeys,
    host: &str,
    cookie_headers: impl IntoIterator<Item = &'a str>,
    base: &str,
    now: i64,
) -> Result<Session, SessionError> {
    let mut single = None;
    let mut chunks: BTreeMap<usize, &str> = BTreeMap::new();
    for header in cookie_headers {
        for (name, value) in cookie_pairs(header) {
            // With `__Host-`, a second cookie of the same name cannot be
            // ours: refuse rather than guess.
            let repeated = match classify(name, base) {
                Some(Ours::Single) => single.replace(value).is_some(),
                Some(Ours::Chunk(i)) => chunks.insert(i, value).is_some(),
                None => false,
            };
            if repeated {
                return Err(SessionError::Malformed("session cookie sent twice"));
            }
        }
    }
    let joined;
    let sealed = match single {
        Some(value) => value,
        None if chunks.is_empty() => return Err(SessionError::Missing),
        None => {
            let first = chunks
                .get(&0)
                .ok_or(SessionError::Malformed("session cookie chunk missing"))?;
            let (count, part) = first
                .split_once(':')
                .ok_or(SessionError::Malformed("chunk 0 has no count"))?;
            let count: usize = count
                .parse()
                .ok()
                .filter(|n| (2..=MAX_CHUNKS).contains(n))
                .ok_or(SessionError::Malformed("bad chunk count"))?;
            let mut all = String::from(part);
            for i in 1..count {
                let part = chunks
                    .get(&i)
                    .ok_or(SessionError::Malformed("session cookie chunk missing"))?;
                all.push_str(part);
            }
            joined = all;
            joined.as_str()
        }
    };
    let plain = open(keys, Purpose::Session, host, sealed)?;
    let session: Session =
        serde_json::from_slice(&plain).map_err(|_| SessionError::Malformed("bad session JSON"))?;
    if now >= session.expires_at {
        return Err(SessionError::Expired);
    }
    Ok(session)
}

/// The `Cookie` header to forward upstream: `cookie_header` without the
/// session cookies of `base` (unsplit and chunks) and without login-flow
/// cookies; `None` when nothing is left. Apply it to each `Cookie` header
/// value when a request carries several (HTTP/2 may split them).
pub fn strip_session_cookies(cookie_header: &str, base: &str) -> Option<String> {
    let kept: Vec<&str> = cookie_header
        .split(';')
        .map(|piece| piece.trim_matches([' ', '\t']))
        .filter(|piece| !piece.is_empty())
        .filter(|piece| {
            let name = piece.split_once('=').map_or(*piece, |(n, _)| n);
            let name = name.trim_matches([' ', '\t']);
            classify(name, base).is_none() && !name.starts_with(FLOW_COOKIE_PREFIX)
        })
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "app.example.com";
    const NOW: i64 = 1_700_000_000;

    fn keys(ids: &[(&str, u8)]) -> SessionKeys {
        SessionKeys::new(
            ids.iter()
                .map(|(kid, fill)| (kid.to_string(), [*fill; KEY_LEN]))
                .collect(),
        )
        .unwrap()
    }

    fn session() -> Session {
        Session {
            sub: "248289761001".into(),
            user: "jane".into(),
            email: Some("jane@example.com".into()),
            groups: vec!["admins".into(), "dev".into()],
            sid: Some("08a5019c-17e1-4977-8f42-65a12843ea02".into()),
            iss: "https://idp.example.com".into(),
            issued_at: NOW,
            expires_at: NOW + 8 * 3600,
            access_token: Some("access-token-value".into()),
            access_token_expires_at: Some(NOW + 300),
            refresh_token: Some("refresh-token-value".into()),
            id_token: Some("a.b.c".into()),
            cert_sha256: Some([7; 32]),
        }
    }

    /// The `Cookie` header a browser would send back for these `Set-Cookie`s.
    fn browser(set_cookies: &[String]) -> String {
        set_cookies
            .iter()
            .filter(|c| !c.contains("Max-Age=0"))
            .map(|c| c.split(';').next().unwrap().to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn round_trip(k: &SessionKeys, s: &Session) -> Result<Session, SessionError> {
        let set = seal_cookies(k, HOST, s, "tlsward", "", NOW).unwrap();
        let header = browser(&set);
        open_cookies(k, HOST, [header.as_str()], "tlsward", NOW + 1)
    }

    #[test]
    fn a_session_round_trips_in_one_cookie_with_the_right_attributes() {
        let k = keys(&[("k1", 1)]);
        let set = seal_cookies(&k, HOST, &session(), "tlsward", "", NOW).unwrap();
        assert_eq!(set.len(), 1);
        let c = &set[0];
        assert!(c.starts_with("__Host-tlsward=v1.k1."), "{c}");
        assert!(
            c.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=28800"),
            "{c}"
        );
        assert!(!c.contains("Domain"), "a __Host- cookie has no Domain");
        assert!(
            !c.contains("access-token-value") && !c.contains("jane"),
            "sealed, not plain"
        );
        assert_eq!(round_trip(&k, &session()).unwrap(), session());
    }

    #[test]
    fn two_seals_of_the_same_session_differ() {
        let k = keys(&[("k1", 1)]);
        let a = seal_cookies(&k, HOST, &session(), "tlsward", "", NOW).unwrap();
        let b = seal_cookies(&k, HOST, &session(), "tlsward", "", NOW).unwrap();
        assert_ne!(a, b, "random nonces");
    }

    #[test]
    fn a_tampered_cookie_is_refused() {
        let k = keys(&[("k1", 1)]);
        let header = browser(&seal_cookies(&k, HOST, &session(), "tlsward", "", NOW).unwrap());
        // Flip one character in the middle of the body.
        let mut bytes = header.into_bytes();
        let at = bytes.len() / 2;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let header = String::from_utf8(bytes).unwrap();
        assert_eq!(
            open_cookies(&k, HOST, [header.as_str()], "tlsward", NOW),
            Err(SessionError::Tampered)
        );
        // A truncated body is refused too.
        let cut = &header[..header.len() - 4];
        assert!(open_cookies(&k, HOST, [cut], "tlsward", NOW).is_err());
    }

    #[test]
    fn a_cookie_sealed_with_a_key_not_held_is_refused() {
        let theirs = keys(&[("k1", 9)]);
        let ours = keys(&[("k1", 1)]);
        let header = browser(&seal_cookies(&theirs, HOST, &session(), "tlsward", "", NOW).unwrap());
        assert_eq!(
            open_cookies(&ours, HOST, [header.as_str()], "tlsward", NOW),
            Err(SessionError::Tampered),
            "same key id, other key"
        );
        let other_id = keys(&[("other", 1)]);
        assert_eq!(
            open_cookies(&other_id, HOST, [header.as_str()], "tlsward", NOW),
            Err(SessionError::UnknownKey)
        );
    }

    #[test]
    fn rotation_old_key_still_opens_new_key_seals() {
        let old = keys(&[("k1", 1)]);
        let old_cookie =
            browser(&seal_cookies(&old, HOST, &session(), "tlsward", "", NOW).unwrap());
        let rotated = keys(&[("k2", 2), ("k1", 1)]);
        assert_eq!(
            open_cookies(&rotated, HOST, [old_cookie.as_str()], "tlsward", NOW).unwrap(),
            session()
        );
        let new = seal_cookies(&rotated, HOST, &session(), "tlsward", &old_cookie, NOW).unwrap();
        assert!(new[0].starts_with("__Host-tlsward=v1.k2."), "{}", new[0]);
        // Once k1 is removed, its cookies no longer open.
        let after = keys(&[("k2", 2)]);
        assert_eq!(
            open_cookies(&after, HOST, [old_cookie.as_str()], "tlsward", NOW),
            Err(SessionError::UnknownKey)
        );
    }

    #[test]
    fn a_cookie_for_another_host_or_purpose_does_not_open() {
        let k = keys(&[("k1", 1)]);
        let header =
            browser(&seal_cookies(&k, "a.example.com", &session(), "tlsward", "", NOW).unwrap());
        assert_eq!(
            open_cookies(&k, "b.example.com", [header.as_str()], "tlsward", NOW),
            Err(SessionError::Tampered)
        );
        // Host case does not matter.
        assert!(open_cookies(&k, "A.Example.COM", [header.as_str()], "tlsward", NOW).is_ok());
        // A value sealed as a login flow is not a session.
        let json = serde_json::to_vec(&session()).unwrap();
        let flow = seal(&k, Purpose::Flow, HOST, &json).unwrap();
        let header = format!("__Host-tlsward={flow}");
        assert_eq!(
            open_cookies(&k, HOST, [header.as_str()], "tlsward", NOW),
            Err(SessionError::Tampered)
        );
    }

    #[test]
    fn expiry_is_checked_on_open_and_seal() {
        let k = keys(&[("k1", 1)]);
        let s = session();
        let header = browser(&seal_cookies(&k, HOST, &s, "tlsward", "", NOW).unwrap());
        assert!(open_cookies(&k, HOST, [header.as_str()], "tlsward", s.expires_at - 1).is_ok());
        assert_eq!(
            open_cookies(&k, HOST, [header.as_str()], "tlsward", s.expires_at),
            Err(SessionError::Expired)
        );
        assert_eq!(
            seal_cookies(&k, HOST, &s, "tlsward", "", s.expires_at),
            Err(SessionError::Expired)
        );
    }

    #[test]
    fn missing_and_malformed_cookies() {
        let k = keys(&[("k1", 1)]);
        assert_eq!(
            open_cookies(&k, HOST, ["other=1; __Host-tlswardx=2"], "tlsward", NOW),
            Err(SessionError::Missing)
        );
        assert_eq!(
            open_cookies(&k, HOST, std::iter::empty(), "tlsward", NOW),
            Err(SessionError::Missing)
        );
        for bad in ["garbage", "v2.k1.AAAA", "v1.k1.!!!", "v1.k1.AAAA"] {
            let header = format!("__Host-tlsward={bad}");
            assert!(
                matches!(
                    open_cookies(&k, HOST, [header.as_str()], "tlsward", NOW),
                    Err(SessionError::Malformed(_))
                ),
                "{bad}"
            );
        }
        let one = browser(&seal_cookies(&k, HOST, &session(), "tlsward", "", NOW).unwrap());
        let twice = format!("{one}; {one}");
        assert!(matches!(
            open_cookies(&k, HOST, [twice.as_str()], "tlsward", NOW),
            Err(SessionError::Malformed(_))
        ));
    }

    fn big_session() -> Session {
        Session {
            groups: (0..300)
                .map(|i| format!("cn=group-{i:03},ou=groups,dc=example,dc=com"))
                .collect(),
            ..session()
        }
    }

    #[test]
    fn a_large_session_is_split_into_chunks_under_4096_bytes_and_read_back() {
        let k = keys(&[("k1", 1)]);
        let big = big_session();
        let set = seal_cookies(&k, HOST, &big, "tlsward", "", NOW).unwrap();
        assert!(set.len() >= 3, "{} chunks", set.len());
        for (i, c) in set.iter().enumerate() {
            assert!(c.len() < MAX_SET_COOKIE_LEN, "chunk {i}: {} bytes", c.len());
            assert!(c.starts_with(&format!("__Host-tlsward-{i}=")), "{c}");
            assert!(c.ends_with("; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=28800"));
        }
        // The browser may send them in any order, over several headers.
        let mut pairs: Vec<String> = browser(&set).split("; ").map(String::from).collect();
        pairs.reverse();
        let (a, b) = pairs.split_at(1);
        let (h1, h2) = (a.join("; "), b.join("; "));
        let opened = open_cookies(&k, HOST, [h1.as_str(), h2.as_str()], "tlsward", NOW).unwrap();
        assert_eq!(opened, big);
    }

    #[test]
    fn a_missing_chunk_is_an_error() {
        let k = keys(&[("k1", 1)]);
        let set = seal_cookies(&k, HOST, &big_session(), "tlsward", "", NOW).unwrap();
        let n = set.len();
        for skip in 0..n {
            let header = browser(
                &set.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != skip)
                    .map(|(_, c)| c.clone())
                    .collect::<Vec<_>>(),
            );
            assert_eq!(
                open_cookies(&k, HOST, [header.as_str()], "tlsward", NOW),
                Err(SessionError::Malformed("session cookie chunk missing")),
                "without chunk {skip}"
            );
        }
    }

    #[test]
    fn a_shrinking_session_expires_its_stale_chunks() {
        let k = keys(&[("k1", 1)]);
        let big = seal_cookies(&k, HOST, &big_session(), "tlsward", "", NOW).unwrap();
        let before = format!("theme=dark; {}", browser(&big));
        let small = seal_cookies(&k, HOST, &session(), "tlsward", &before, NOW).unwrap();
        assert!(small[0].starts_with("__Host-tlsward=v1."));
        let expired: Vec<&String> = small.iter().skip(1).collect();
        assert_eq!(expired.len(), big.len());
        for (i, c) in expired.iter().enumerate() {
            assert_eq!(
                **c,
                format!("__Host-tlsward-{i}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
            );
        }
        // And the other way: the single cookie is expired when chunks replace it.
        let grown =
            seal_cookies(&k, HOST, &big_session(), "tlsward", &browser(&small), NOW).unwrap();
        assert!(grown.last().unwrap().starts_with("__Host-tlsward=; "));
        // A browser applying `grown` holds only the chunks, which open.
        let header = browser(&grown);
        assert_eq!(
            open_cookies(&k, HOST, [header.as_str()], "tlsward", NOW).unwrap(),
            big_session()
        );
    }

    #[test]
    fn a_session_too_large_for_every_chunk_fails_and_minimal_fits() {
        let k = keys(&[("k1", 1)]);
        let huge = Session {
            groups: (0..2000).map(|i| format!("group-number-{i:05}")).collect(),
            ..session()
        };
        assert_eq!(
            seal_cookies(&k, HOST, &huge, "tlsward", "", NOW),
            Err(SessionError::TooLarge)
        );
        let tokens = Session {
            access_token: Some("x".repeat(6000)),
            id_token: Some("y".repeat(6000)),
            refresh_token: Some("z".repeat(6000)),
            ..session()
        };
        let full = seal_cookies(&k, HOST, &tokens, "tlsward", "", NOW).unwrap();
        let minimal = tokens.minimal();
        let small = seal_cookies(&k, HOST, &minimal, "tlsward", "", NOW).unwrap();
        assert!(full.len() > 1 && small.len() == 1);
        assert_eq!(minimal.access_token, None);
        assert_eq!(minimal.refresh_token, None);
        assert_eq!(minimal.id_token, None);
        assert_eq!(minimal.access_token_expires_at, None);
        assert_eq!(minimal.cert_sha256, tokens.cert_sha256);
        assert_eq!(minimal.groups, tokens.groups);
        assert_eq!(round_trip(&k, &minimal).unwrap(), minimal);
    }

    #[test]
    fn the_cookie_json_is_compact_and_the_thumbprint_is_base64url() {
        let json = serde_json::to_string(&session().minimal()).unwrap();
        assert!(json.contains(&format!("\"c\":\"{}\"", URL_SAFE_NO_PAD.encode([7u8; 32]))));
        assert!(!json.contains("\"at\""), "{json}");
        let bare = Session {
            email: None,
            groups: vec![],
            sid: None,
            cert_sha256: None,
            ..session().minimal()
        };
        let json = serde_json::to_string(&bare).unwrap();
        assert_eq!(
            json,
            r#"{"s":"248289761001","u":"jane","i":"https://idp.example.com","ia":1700000000,"x":1700028800}"#
        );
        let back: Session = serde_json::from_str(&json).unwrap();
        assert_eq!(back, bare);
    }

    #[test]
    fn debug_output_holds_no_token_or_key() {
        let text = format!("{:?}", session());
        assert!(!text.contains("access-token-value") && !text.contains("refresh-token-value"));
        let k = keys(&[("k1", 0xAB)]);
        let text = format!("{k:?}");
        assert_eq!(text, r#"SessionKeys { ids: ["k1"] }"#);
    }

    #[test]
    fn certificate_binding() {
        let s = session();
        assert!(s.bound_to(Some(&[7; 32])));
        assert!(!s.bound_to(Some(&[8; 32])));
        assert!(!s.bound_to(None));
        let unbound = Session {
            cert_sha256: None,
            ..session()
        };
        assert!(unbound.bound_to(None) && unbound.bound_to(Some(&[8; 32])));
    }

    #[test]
    fn cookie_header_parsing() {
        let pairs: Vec<_> =
            cookie_pairs(" a=1;b=2 ;  c = 3 ;;novalue; =x; d=\"quoted\"; e=; f=a=b\t").collect();
        assert_eq!(
            pairs,
            vec![
                ("a", "1"),
                ("b", "2"),
                ("c", "3"),
                ("d", "quoted"),
                ("e", ""),
                ("f", "a=b")
            ]
        );
        assert_eq!(cookie_pairs("").count(), 0);
    }

    #[test]
    fn strip_removes_session_chunks_and_flow_cookies_only() {
        assert_eq!(
            strip_session_cookies(
                "a=1; __Host-tlsward=v1.x.y; __Host-tlsward-0=2:abc; b=\"q\"; __Host-tlsward-1=def; __Host-tlsward-flow-abcdefgh=v1.z; __Host-tlswardx=keep; __Host-tlsward-01=keep; __Host-tlsward-x=keep",
                "tlsward"
            )
            .as_deref(),
            Some("a=1; b=\"q\"; __Host-tlswardx=keep; __Host-tlsward-01=keep; __Host-tlsward-x=keep")
        );
        assert_eq!(
            strip_session_cookies("__Host-tlsward=v1; __Host-tlsward-3=x", "tlsward"),
            None
        );
        assert_eq!(strip_session_cookies("", "tlsward"), None);
        assert_eq!(strip_session_cookies("  ;  ", "tlsward"), None);
        assert_eq!(
            strip_session_cookies("x=1", "tlsward").as_deref(),
            Some("x=1")
        );
        // A different base name is a different application's cookie.
        assert_eq!(
            strip_session_cookies("__Host-other=1", "tlsward").as_deref(),
            Some("__Host-other=1")
        );
    }

    #[test]
    fn clear_cookies_expires_every_cookie_of_ours() {
        let got = clear_cookies(
            [
                "a=1; __Host-tlsward-0=x",
                "__Host-tlsward-1=y; __Host-tlsward=z",
            ],
            "tlsward",
        );
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|c| c.ends_with("Max-Age=0")));
        assert!(got[0].starts_with("__Host-tlsward-0=;"));
    }

    fn secret<'a>(entries: &'a [(&'a str, &'a [u8])]) -> Result<SessionKeys, SessionKeyError> {
        SessionKeys::from_secret_data(entries.iter().copied())
    }

    #[test]
    fn keys_from_a_secret() {
        let b64 = STANDARD.encode([3u8; 32]);
        let b64_newline = format!("{b64}\n");
        let url = URL_SAFE_NO_PAD.encode([4u8; 32]);
        let raw = [5u8; 32];
        let k = secret(&[("only", b64_newline.as_bytes())]).unwrap();
        assert_eq!(k.primary_id(), "only");

        let k = secret(&[
            ("a", b64.as_bytes()),
            ("b", url.as_bytes()),
            ("c", &raw),
            ("primary", b"b\n"),
        ])
        .unwrap();
        assert_eq!(k.primary_id(), "b");
        // Each decoding gives the key a plain SessionKeys would hold.
        let plain = keys(&[("a", 3), ("b", 4), ("c", 5)]);
        for kid in ["a", "b", "c"] {
            let sealed = {
                let only = SessionKeys::new(vec![(
                    kid.into(),
                    [match kid {
                        "a" => 3,
                        "b" => 4,
                        _ => 5,
                    }; 32],
                )])
                .unwrap();
                seal(&only, Purpose::Session, HOST, b"x").unwrap()
            };
            assert_eq!(open(&k, Purpose::Session, HOST, &sealed).unwrap(), b"x");
            assert_eq!(open(&plain, Purpose::Session, HOST, &sealed).unwrap(), b"x");
        }
    }

    #[test]
    fn bad_secrets_name_the_entry_and_the_fix() {
        let b64 = STANDARD.encode([3u8; 32]);
        assert_eq!(secret(&[]).unwrap_err(), SessionKeyError::NoKeys);
        assert_eq!(
            secret(&[("primary", b"k1")]).unwrap_err(),
            SessionKeyError::PrimaryUnknown {
                primary: "k1".into(),
                kids: String::new()
            }
        );
        let err = secret(&[("k.1", b64.as_bytes())]).unwrap_err();
        assert_eq!(err, SessionKeyError::BadKeyId { kid: "k.1".into() });
        assert!(err.to_string().contains("`k.1`"));
        let short = STANDARD.encode([3u8; 16]);
        let err = secret(&[("k1", short.as_bytes())]).unwrap_err();
        assert_eq!(
            err,
            SessionKeyError::BadKey {
                kid: "k1".into(),
                len: 16
            }
        );
        assert!(err.to_string().contains("openssl rand -base64 32"), "{err}");
        assert!(
            !err.to_string().contains(&short),
            "no key material in messages"
        );
        let err = secret(&[("k1", b64.as_bytes()), ("k2", b64.as_bytes())]).unwrap_err();
        assert_eq!(
            err,
            SessionKeyError::PrimaryMissing {
                kids: "k1, k2".into()
            }
        );
        assert!(err.to_string().contains("`primary`"));
        let err = secret(&[("k1", b64.as_bytes()), ("primary", b"k9")]).unwrap_err();
        assert_eq!(
            err,
            SessionKeyError::PrimaryUnknown {
                primary: "k9".into(),
                kids: "k1".into()
            }
        );
        assert!(matches!(
            SessionKeys::new(vec![("x".repeat(33), [0; 32])]),
            Err(SessionKeyError::BadKeyId { .. })
        ));
    }
}
