//! The signing keys of one issuer, fetched and kept fresh.
//!
//! Readers take the current key set without a lock ([`KeyCache::current`]).
//! A token signed with a key the set does not hold triggers
//! [`KeyCache::refresh_for_unknown_kid`]: one fetch for all the requests
//! that missed at the same time, and at most one per
//! [`KeyCacheConfig::min_refetch_interval`], so tokens with made-up `kid`s
//! cannot turn the proxy against its IdP. [`KeyCache::run`] refreshes on
//! the schedule the IdP's `Cache-Control: max-age` asks for, within bounds.
//! A failed fetch never replaces good keys: the last good set is served,
//! and the cache reports itself stale.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::time::Instant;

use crate::oidc::client::{Discovery, DiscoveryError, FetchError, HttpClient, fetch_discovery};
use crate::oidc::jwt::{Jwks, JwksError};

/// What the cache needs from a key set; [`Jwks`] in production.
pub trait KeySet: Default + Send + Sync + 'static {
    /// Why a document was refused.
    type Error: std::fmt::Display;
    /// Reads a JWK Set document.
    fn parse(json: &[u8]) -> Result<Self, Self::Error>;
    /// The number of usable keys.
    fn len(&self) -> usize;
    /// Whether the set holds no usable key.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether a key with this `kid` is in the set.
    fn contains(&self, kid: &str) -> bool;
}

impl KeySet for Jwks {
    type Error = JwksError;
    fn parse(json: &[u8]) -> Result<Self, JwksError> {
        Jwks::from_json(json)
    }
    fn len(&self) -> usize {
        Jwks::len(self)
    }
    fn contains(&self, kid: &str) -> bool {
        Jwks::contains(self, kid)
    }
}

/// Default for [`KeyCacheConfig::min_refetch_interval`].
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Refresh interval when the IdP sends no `max-age`.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(5 * 60);
/// The shortest refresh interval a `max-age` can ask for.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);
/// The longest refresh interval a `max-age` can ask for.
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 60 * 60);
/// Default wait before retrying after a failed fetch.
pub const DEFAULT_RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// One issuer's key source and schedule.
#[derive(Clone, Debug)]
pub struct KeyCacheConfig {
    /// The issuer: for discovery, logs and metrics labels.
    pub issuer: String,
    /// The key set's URL; `None` discovers it from the issuer's
    /// `/.well-known/openid-configuration`.
    pub jwks_uri: Option<String>,
    /// At most one fetch for unknown `kid`s per this interval.
    pub min_refetch_interval: Duration,
    /// The refresh interval when the IdP sends no `max-age`.
    pub default_refresh: Duration,
    /// The lower bound on a `max-age`.
    pub min_refresh: Duration,
    /// The upper bound on a `max-age`.
    pub max_refresh: Duration,
    /// The wait before the next scheduled fetch after a failed one.
    pub retry_after_failure: Duration,
}

impl KeyCacheConfig {
    /// Defaults for `issuer`, with its key set found by discovery.
    pub fn new(issuer: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            jwks_uri: None,
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
            default_refresh: DEFAULT_REFRESH,
            min_refresh: MIN_REFRESH,
            max_refresh: MAX_REFRESH,
            retry_after_failure: DEFAULT_RETRY_AFTER_FAILURE,
        }
    }
}

/// Why a key set fetch failed. The last good keys stay in use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFetchError {
    /// Discovery failed (unreachable, or not this issuer's document).
    #[error("{0}")]
    Discovery(#[from] DiscoveryError),
    /// The key set could not be fetched.
    #[error("fetching the key set: {0}")]
    Fetch(#[from] FetchError),
    /// The document is not a usable key set.
    #[error("invalid key set: {0}")]
    Invalid(String),
    /// The key set holds no usable key.
    #[error("the key set holds no usable key")]
    Empty,
}

/// A fetch's result, as the `result` label of
/// `tlsward_oidc_jwks_fetches_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// New keys in use.
    Success,
    /// The IdP was unreachable or answered with an error.
    Error,
    /// The document was not a key set, or discovery named another issuer.
    Invalid,
    /// The key set was empty.
    Empty,
}

impl FetchOutcome {
    /// Every outcome, in label order.
    pub const ALL: [FetchOutcome; 4] = [Self::Success, Self::Error, Self::Invalid, Self::Empty];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Error => "error",
            Self::Invalid => "invalid",
            Self::Empty => "empty",
        }
    }

    fn of(error: &KeyFetchError) -> Self {
        match error {
            KeyFetchError::Discovery(DiscoveryError::Fetch(_)) | KeyFetchError::Fetch(_) => {
                Self::Error
            }
            KeyFetchError::Empty => Self::Empty,
            _ => Self::Invalid,
        }
    }
}

/// What metrics and logs read about one cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyCacheStats {
    /// The issuer.
    pub issuer: String,
    /// Fetches so far, per outcome (in [`FetchOutcome::ALL`] order).
    pub fetches: [(FetchOutcome, u64); 4],
    /// Keys in the set served now.
    pub keys: usize,
    /// When the last fetch succeeded (Unix seconds).
    pub last_success: Option<i64>,
    /// The last fetch failed: the keys served are older than it.
    pub stale: bool,
    /// Why the last fetch failed, while stale.
    pub last_error: Option<String>,
}

impl KeyCacheStats {
    /// Fetches with this outcome so far.
    pub fn fetches(&self, outcome: FetchOutcome) -> u64 {
        self.fetches
            .iter()
            .find(|(o, _)| *o == outcome)
            .map_or(0, |(_, n)| *n)
    }
}

/// Held while fetching: one fetch at a time per issuer.
struct FetchState {
    /// The discovered key set URL, until a fetch from it fails.
    discovered_jwks_uri: Option<String>,
    last_attempt: Option<Instant>,
}

struct Status {
    last_success: Option<i64>,
    last_error: Option<String>,
    next_refresh_at: Instant,
    failure_streak: u64,
}

/// The keys of one issuer. Share it as `Arc<KeyCache>`.
pub struct KeyCache<K: KeySet = Jwks> {
    config: KeyCacheConfig,
    client: HttpClient,
    keys: ArcSwap<K>,
    discovery: ArcSwapOption<Discovery>,
    fetch: tokio::sync::Mutex<FetchState>,
    /// Bumped after every fetch attempt: a caller that waited for the
    /// fetch lock sees whether someone else fetched meanwhile.
    generation: AtomicU64,
    status: std::sync::Mutex<Status>,
    fetches: [AtomicU64; 4],
}

impl<K: KeySet> std::fmt::Debug for KeyCache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("issuer", &self.config.issuer)
            .field("keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl<K: KeySet> KeyCache<K> {
    /// An empty cache; call [`KeyCache::refresh`] to fetch the keys, then
    /// spawn [`KeyCache::run`].
    pub fn new(config: KeyCacheConfig, client: HttpClient) -> Arc<Self> {
        Arc::new(Self {
            config,
            client,
            keys: ArcSwap::from_pointee(K::default()),
            discovery: ArcSwapOption::empty(),
            fetch: tokio::sync::Mutex::new(FetchState {
                discovered_jwks_uri: None,
                last_attempt: None,
            }),
            generation: AtomicU64::new(0),
            status: std::sync::Mutex::new(Status {
                last_success: None,
                last_error: None,
                next_refresh_at: Instant::now(),
                failure_streak: 0,
            }),
            fetches: Default::default(),
        })
    }

    /// The issuer this cache serves.
    pub fn issuer(&self) -> &str {
        &self.config.issuer
    }

    /// The keys in use: the last good set (empty before the first success).
    pub fn current(&self) -> Arc<K> {
        self.keys.load_full()
    }

    /// The provider configuration, once discovery has succeeded (never
    /// when the key set URL is configured).
    pub fn discovery(&self) -> Option<Arc<Discovery>> {
        self.discovery.load_full()
    }

    /// Fetches the key set now (waiting for a fetch already running, then
    /// fetching again). On failure the previous keys stay in use.
    pub async fn refresh(&self) -> Result<(), KeyFetchError> {
        let mut state = self.fetch.lock().await;
        self.fetch_locked(&mut state).await
    }

    /// The keys to check a token whose `kid` is not in [`current`]: the
    /// set after at most one fetch. Concurrent callers share one fetch; no
    /// fetch happens when one started less than `min_refetch_interval` ago
    /// (the caller gets the current keys, which may still lack `kid`).
    ///
    /// [`current`]: KeyCache::current
    pub async fn refresh_for_unknown_kid(&self, kid: &str) -> Arc<K> {
        let seen = self.generation.load(Ordering::Acquire);
        let keys = self.current();
        if keys.contains(kid) {
            return keys;
        }
        let mut state = self.fetch.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            // A fetch ended while we waited: its result is ours too.
            return self.current();
        }
        let recent = state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.config.min_refetch_interval);
        if !recent {
            // The outcome is logged and counted; the caller only needs keys.
            let _ = self.fetch_locked(&mut state).await;
        }
        self.current()
    }

    /// How long until the scheduled refresh is due (zero when it is).
    pub fn next_refresh_in(&self) -> Duration {
        let at = self.lock_status().next_refresh_at;
        at.saturating_duration_since(Instant::now())
    }

    /// The counters and state for metrics.
    pub fn stats(&self) -> KeyCacheStats {
        let status = self.lock_status();
        KeyCacheStats {
            issuer: self.config.issuer.clone(),
            fetches: FetchOutcome::ALL
                .map(|o| (o, self.fetches[o as usize].load(Ordering::Relaxed))),
            keys: self.keys.load().len(),
            last_success: status.last_success,
            stale: status.last_error.is_some(),
            last_error: status.last_error.clone(),
        }
    }

    /// Refreshes on schedule until `shutdown` resolves. Fetches at once if
    /// no fetch has happened yet.
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.next_refresh_in()) => {}
            }
            tokio::select! {
                () = &mut shutdown => return,
                _ = self.refresh() => {}
            }
        }
    }

    fn lock_status(&self) -> std::sync::MutexGuard<'_, Status> {
        // The status holds plain values: usable even if a holder panicked.
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn fetch_locked(&self, state: &mut FetchState) -> Result<(), KeyFetchError> {
        state.last_attempt = Some(Instant::now());
        let result = self.fetch_once(state).await;
        let outcome = match &result {
            Ok(_) => FetchOutcome::Success,
            Err(e) => FetchOutcome::of(e),
        };
        self.fetches[outcome as usize].fetch_add(1, Ordering::Relaxed);
        let result = match result {
            Ok((keys, cache_control)) => {
                let count = keys.len();
                self.keys.store(Arc::new(keys));
                let mut status = self.lock_status();
                status.last_success = Some(unix_now());
                status.last_error = None;
                status.next_refresh_at = Instant::now()
                    + refresh_interval(
                        cache_control.as_deref(),
                        self.config.default_refresh,
                        self.config.min_refresh,
                        self.config.max_refresh,
                    );
                if status.failure_streak > 0 {
                    tracing::info!(
                        issuer = %self.config.issuer,
                        keys = count,
                        failed_fetches = status.failure_streak,
                        "OIDC key set fetched again"
                    );
                }
                status.failure_streak = 0;
                Ok(())
            }
            Err(error) => {
                let mut status = self.lock_status();
                status.last_error = Some(error.to_string());
                status.next_refresh_at = Instant::now() + self.config.retry_after_failure;
                if status.failure_streak == 0 {
                    tracing::warn!(
                        issuer = %self.config.issuer,
                        error = %error,
                        keys = self.keys.load().len(),
                        "OIDC key set fetch failed; serving the last good keys"
                    );
                }
                status.failure_streak += 1;
                Err(error)
            }
        };
        self.generation.fetch_add(1, Ordering::Release);
        result
    }

    async fn fetch_once(
        &self,
        state: &mut FetchState,
    ) -> Result<(K, Option<String>), KeyFetchError> {
        let uri = match (&self.config.jwks_uri, &state.discovered_jwks_uri) {
            (Some(uri), _) | (None, Some(uri)) => uri.clone(),
            (None, None) => {
                let discovery = fetch_discovery(&self.client, &self.config.issuer).await?;
                let uri = discovery.jwks_uri.clone();
                self.discovery.store(Some(Arc::new(discovery)));
                state.discovered_jwks_uri = Some(uri.clone());
                uri
            }
        };
        let response = match self.client.get(&uri).await.and_then(|r| r.success()) {
            Ok(r) => r,
            Err(e) => {
                // The provider may have moved its keys: discover again next time.
                state.discovered_jwks_uri = None;
                return Err(e.into());
            }
        };
        let keys = K::parse(&response.body).map_err(|e| KeyFetchError::Invalid(e.to_string()))?;
        if keys.is_empty() {
            return Err(KeyFetchError::Empty);
        }
        Ok((keys, response.cache_control))
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The refresh interval a `Cache-Control` header asks for: its `max-age`
/// (`no-cache` and `no-store` count as 0) clamped to `[min, max]`, or
/// `default` without one.
pub fn refresh_interval(
    cache_control: Option<&str>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    let mut asked = None;
    let mut no_cache = false;
    for directive in cache_control.unwrap_or("").split(',') {
        let (name, value) = match directive.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        if name.eq_ignore_ascii_case("max-age") {
            asked = value
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
        } else if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
            no_cache = true;
        }
    }
    if no_cache {
        asked = Some(Duration::ZERO);
    }
    match asked {
        Some(d) => d.clamp(min, max.max(min)),
        None => default,
    }
}
