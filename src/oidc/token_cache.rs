//! Verified bearer tokens, remembered until they expire, so a client that
//! sends the same token on every request costs one signature check per
//! token rather than per request. Pure: `now` is a parameter.
//!
//! One cache serves one set of [`TokenRules`](super::jwt::TokenRules) (one
//! policy's issuer): an entry says "this token passed these rules", nothing
//! more. The certificate binding is not part of an entry; check it per
//! connection with [`check_binding`](super::jwt::check_binding). Only
//! successes are stored: a refused token is cheap to refuse again, and
//! storing refusals would let anyone fill the cache.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::digest;

use super::jwt::Verified;
use crate::fast_hash::HashMap;

/// The cache key: the SHA-256 of the token's bytes. The token itself is not
/// kept, so the cache holds no bearer credential.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

impl CacheKey {
    /// The key of `token` (the compact JWS, without `Bearer `).
    pub fn of(token: &str) -> CacheKey {
        let d = digest::digest(&digest::SHA256, token.as_bytes());
        let mut key = [0; 32];
        key.copy_from_slice(d.as_ref());
        CacheKey(key)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

struct Entry {
    /// Copied out of `verified` so a sweep does not chase pointers.
    exp: i64,
    verified: Arc<Verified>,
}

/// A bounded map from token hash to verified token, shared by all the
/// connections of a policy (`Sync`; one short lock per lookup).
///
/// When full, an insert first drops the expired entries; if that frees
/// nothing, it drops an eighth of the entries, whichever the map's
/// (per-process seeded) iteration order yields first, so effectively at
/// random. No recency is tracked: that would make every hit a write, and a
/// dropped entry costs only one more signature check. Freeing an eighth at
/// a time keeps the sweep's cost amortised over many inserts.
pub struct TokenCache {
    capacity: usize,
    entries: Mutex<HashMap<CacheKey, Entry>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl TokenCache {
    /// An empty cache holding at most `capacity` tokens (0: caches nothing).
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            capacity,
            entries: Mutex::new(HashMap::default()),
        }
    }

    // A panic elsewhere while holding the lock cannot leave the map
    // inconsistent (every change is a single map call), so poisoning is
    // ignored rather than turned into a panic on the request path.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The verified token for `key`, unless absent or expired (`now >=
    /// exp`; an expired entry is removed).
    pub fn get(&self, key: &CacheKey, now: i64) -> Option<Arc<Verified>> {
        let mut entries = self.lock();
        let entry = entries.get(key)?;
        if now < entry.exp {
            return Some(Arc::clone(&entry.verified));
        }
        entries.remove(key);
        None
    }

    /// Remembers a verified token until its `exp`. A token already at or
    /// past `exp` (accepted within the clock skew) is not stored.
    pub fn insert(&self, key: CacheKey, verified: Arc<Verified>, now: i64) {
        let exp = verified.exp;
        if now >= exp || self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, e| now < e.exp);
            if entries.len() >= self.capacity {
                let drop: Vec<CacheKey> = entries
                    .keys()
                    .take(self.capacity / 8 + 1)
                    .copied()
                    .collect();
                for k in &drop {
                    entries.remove(k);
                }
            }
        }
        entries.insert(key, Entry { exp, verified });
    }

    /// How many tokens are held (expired ones included until swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every token: for when the issuer's keys change and a token
    /// signed by a withdrawn key must stop being accepted.
    pub fn clear(&self) {
        self.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::json;

    use super::*;
    use crate::oidc::jwt::test_signing::{TestKey, jwks_json};
    use crate::oidc::jwt::{Algorithm, Binding, Jwks, TokenError, TokenRules, check_binding};

    const ISS: &str = "https://idp.example.com";
    const NOW: i64 = 1_767_225_600;

    fn key() -> &'static (TestKey, Jwks) {
        static KEY: OnceLock<(TestKey, Jwks)> = OnceLock::new();
        KEY.get_or_init(|| {
            let k = TestKey::generate(Algorithm::ES256, Some("k")).unwrap();
            let set = Jwks::from_json(&jwks_json(&[k.jwk()])).unwrap();
            (k, set)
        })
    }

    /// A token and its verification, expiring at `exp`.
    fn token(sub: &str, exp: i64, cnf: Option<[u8; 32]>) -> (String, Arc<Verified>) {
        use base64::Engine;
        let mut claims = json!({"iss": ISS, "sub": sub, "exp": exp});
        if let Some(hash) = cnf {
            claims["cnf"] =
                json!({"x5t#S256": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash)});
        }
        let (k, set) = key();
        let t = k.sign(&claims).unwrap();
        let v = crate::oidc::jwt::verify(&t, set, &TokenRules::new(ISS), NOW).unwrap();
        (t, Arc::new(v))
    }

    #[test]
    fn hit_miss_and_expiry() {
        let cache = TokenCache::new(10);
        let (t, v) = token("alice", NOW + 100, None);
        let key = CacheKey::of(&t);
        assert!(cache.get(&key, NOW).is_none());
        cache.insert(key, v, NOW);
        assert_eq!(cache.get(&key, NOW).unwrap().subject(), Some("alice"));
        assert_eq!(cache.get(&key, NOW + 99).unwrap().subject(), Some("alice"));
        // Another token (even one byte different) misses.
        let (other, _) = token("bob", NOW + 100, None);
        assert!(cache.get(&CacheKey::of(&other), NOW).is_none());
        let mut tweaked = t.clone();
        tweaked.push('A');
        assert!(cache.get(&CacheKey::of(&tweaked), NOW).is_none());
        // At exp it is gone, and removed.
        assert!(cache.get(&key, NOW + 100).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn tokens_accepted_within_the_skew_are_not_stored() {
        let cache = TokenCache::new(10);
        let (t, v) = token("alice", NOW - 10, None);
        cache.insert(CacheKey::of(&t), v, NOW);
        assert!(cache.is_empty());
        let none = TokenCache::new(0);
        let (t, v) = token("alice", NOW + 10, None);
        none.insert(CacheKey::of(&t), v, NOW);
        assert!(none.is_empty());
    }

    #[test]
    fn capacity_is_a_bound_and_expired_entries_go_first() {
        let cache = TokenCache::new(16);
        let (_, short) = token("short", NOW + 10, None);
        let (_, long) = token("long", NOW + 1000, None);
        // Keys need not be real token hashes for the bound.
        let key = |i: u32| CacheKey::of(&format!("token-{i}"));
        for i in 0..8 {
            cache.insert(key(i), Arc::clone(&short), NOW);
        }
        for i in 8..16 {
            cache.insert(key(i), Arc::clone(&long), NOW);
        }
        assert_eq!(cache.len(), 16);
        // Full; the short-lived half has expired: only it is dropped.
        cache.insert(key(100), Arc::clone(&long), NOW + 20);
        assert_eq!(cache.len(), 9);
        for i in 8..16 {
            assert!(cache.get(&key(i), NOW + 20).is_some(), "{i}");
        }
        // Full of live entries: some go, the bound holds, the new one is in.
        for i in 200..400 {
            cache.insert(key(i), Arc::clone(&long), NOW + 20);
            assert!(cache.len() <= 16);
            assert!(cache.get(&key(i), NOW + 20).is_some());
        }
        // Re-inserting a held key when full evicts nothing.
        let mut i = 400;
        while cache.len() < 16 {
            cache.insert(key(i), Arc::clone(&long), NOW + 20);
            i += 1;
        }
        cache.insert(key(i - 1), Arc::clone(&long), NOW + 20);
        assert_eq!(cache.len(), 16);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn a_cached_bound_token_is_checked_per_connection() {
        let cert = [3u8; 32];
        let cache = TokenCache::new(10);
        let (t, v) = token("alice", NOW + 100, Some(cert));
        let key = CacheKey::of(&t);
        cache.insert(key, v, NOW);
        let hit = cache.get(&key, NOW).unwrap();
        assert_eq!(check_binding(&hit, Binding::Required, Some(&cert)), Ok(()));
        // The same token replayed on a connection with another certificate,
        // or none, fails although it is cached.
        let hit = cache.get(&key, NOW + 1).unwrap();
        assert_eq!(
            check_binding(&hit, Binding::Required, Some(&[4; 32])),
            Err(TokenError::CertBindingMismatch)
        );
        assert_eq!(
            check_binding(&hit, Binding::IfPresent, None),
            Err(TokenError::ClientCertificateMissing)
        );
    }

    #[test]
    fn shared_across_threads() {
        let cache = Arc::new(TokenCache::new(1000));
        let (t, v) = token("alice", NOW + 100, None);
        let key = CacheKey::of(&t);
        cache.insert(key, v, NOW);
        let handles: Vec<_> = (0..4)
            .map(|n| {
                let cache = Arc::clone(&cache);
                let (_, v) = token(&format!("user{n}"), NOW + 100, None);
                std::thread::spawn(move || {
                    for i in 0..100 {
                        cache.insert(CacheKey::of(&format!("{n}-{i}")), Arc::clone(&v), NOW);
                        assert!(cache.get(&key, NOW).is_some());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(cache.len(), 401);
    }
}
