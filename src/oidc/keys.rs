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
    /// The fetch runs in its own task, so a caller that goes away (its
    /// client hung up) does not cancel it for the others.
    ///
    /// [`current`]: KeyCache::current
    pub async fn refresh_for_unknown_kid(self: &Arc<Self>, kid: &str) -> Arc<K> {
        let seen = self.generation.load(Ordering::Acquire);
        let keys = self.current();
        if keys.contains(kid) {
            return keys;
        }
        let cache = Arc::clone(self);
        // A panic in the fetch leaves the keys as they were.
        let _ = tokio::spawn(async move { cache.fetch_unless_recent(seen).await }).await;
        self.current()
    }

    /// The shared part of [`KeyCache::refresh_for_unknown_kid`]: `seen` is
    /// the fetch generation the caller saw before it missed.
    async fn fetch_unless_recent(&self, seen: u64) {
        let mut state = self.fetch.lock().await;
        if self.generation.load(Ordering::Acquire) != seen {
            // A fetch ended while we waited: its result is ours too.
            return;
        }
        let recent = state
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.config.min_refetch_interval);
        if !recent {
            // The outcome is logged and counted; the caller only needs keys.
            let _ = self.fetch_locked(&mut state).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::fixtures::{Idp, Mode};
    use crate::testing::Captured;

    /// Records the kids of `{"keys":[{"kid":..}]}`; stands in for `Jwks`.
    #[derive(Debug, Default)]
    struct Kids(Vec<String>);

    impl KeySet for Kids {
        type Error = serde_json::Error;
        fn parse(json: &[u8]) -> Result<Self, serde_json::Error> {
            #[derive(serde::Deserialize)]
            struct Doc {
                keys: Vec<Key>,
            }
            #[derive(serde::Deserialize)]
            struct Key {
                kid: String,
            }
            let doc: Doc = serde_json::from_slice(json)?;
            Ok(Kids(doc.keys.into_iter().map(|k| k.kid).collect()))
        }
        fn len(&self) -> usize {
            self.0.len()
        }
        fn contains(&self, kid: &str) -> bool {
            self.0.iter().any(|k| k == kid)
        }
    }

    fn config(idp: &Idp) -> KeyCacheConfig {
        let mut c = KeyCacheConfig::new(idp.issuer.clone());
        c.jwks_uri = Some(idp.jwks_uri());
        c
    }

    fn cache(idp: &Idp, config: KeyCacheConfig) -> Arc<KeyCache<Kids>> {
        KeyCache::new(config, idp.client())
    }

    #[tokio::test]
    async fn discovers_the_key_set_once() {
        let idp = Idp::start().await;
        let keys = cache(&idp, KeyCacheConfig::new(idp.issuer.clone()));
        assert!(keys.current().is_empty());
        keys.refresh().await.unwrap();
        assert!(keys.current().contains("k1"));
        assert_eq!(keys.discovery().unwrap().jwks_uri, idp.jwks_uri());
        keys.refresh().await.unwrap();
        assert_eq!((idp.discovery_requests(), idp.jwks_requests()), (1, 2));
    }

    #[tokio::test]
    async fn a_discovery_naming_another_issuer_gives_no_keys() {
        let idp = Idp::start().await;
        idp.set_issuer_in_doc("https://evil.example");
        let keys = cache(&idp, KeyCacheConfig::new(idp.issuer.clone()));
        let err = keys.refresh().await.unwrap_err();
        assert!(
            matches!(
                err,
                KeyFetchError::Discovery(DiscoveryError::IssuerMismatch { .. })
            ),
            "{err:?}"
        );
        assert_eq!(idp.jwks_requests(), 0);
        assert_eq!(keys.stats().fetches(FetchOutcome::Invalid), 1);
    }

    #[tokio::test]
    async fn an_unknown_kid_after_rotation_refetches_once_then_rate_limits() {
        let idp = Idp::start().await;
        let mut c = config(&idp);
        c.min_refetch_interval = Duration::from_millis(200);
        let keys = cache(&idp, c);
        keys.refresh().await.unwrap();
        // A kid the set already holds never fetches.
        assert!(keys.refresh_for_unknown_kid("k1").await.contains("k1"));
        assert_eq!(idp.jwks_requests(), 1);

        idp.set_kids(&["k2", "k3"]);
        tokio::time::sleep(Duration::from_millis(250)).await;
        // The first unknown kid after the interval fetches at once.
        let set = keys.refresh_for_unknown_kid("k2").await;
        assert!(set.contains("k2") && set.contains("k3") && !set.contains("k1"));
        assert_eq!(idp.jwks_requests(), 2);

        // Another unknown kid right after: no fetch.
        idp.set_kids(&["k4"]);
        let set = keys.refresh_for_unknown_kid("k4").await;
        assert!(!set.contains("k4"));
        assert_eq!(idp.jwks_requests(), 2);

        // Once the interval has passed, it fetches again.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(keys.refresh_for_unknown_kid("k4").await.contains("k4"));
        assert_eq!(idp.jwks_requests(), 3);
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_fetch() {
        let idp = Idp::start().await;
        let mut c = config(&idp);
        // No rate limit: only the coalescing can keep this to one fetch.
        c.min_refetch_interval = Duration::ZERO;
        let keys = cache(&idp, c);
        keys.refresh().await.unwrap();
        idp.set_kids(&["k2"]);
        idp.set_delay(Duration::from_millis(100));

        let lookups = (0..50).map(|i| {
            let keys = keys.clone();
            // Half ask for the new kid, half for one that never comes.
            let kid = if i % 2 == 0 { "k2" } else { "ghost" };
            tokio::spawn(async move { keys.refresh_for_unknown_kid(kid).await })
        });
        let sets = futures::future::join_all(lookups).await;
        assert_eq!(
            idp.jwks_requests(),
            2,
            "one initial fetch, one for all 50 misses"
        );
        for set in sets {
            assert!(set.unwrap().contains("k2"));
        }
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_does_not_cancel_the_fetch() {
        let idp = Idp::start().await;
        let mut c = config(&idp);
        c.min_refetch_interval = Duration::from_millis(100);
        let keys = cache(&idp, c);
        keys.refresh().await.unwrap();
        idp.set_kids(&["k2"]);
        idp.set_delay(Duration::from_millis(200));
        tokio::time::sleep(Duration::from_millis(120)).await;
        // The request that triggered the fetch is dropped mid-fetch...
        let gone = tokio::time::timeout(
            Duration::from_millis(50),
            keys.refresh_for_unknown_kid("k2"),
        )
        .await;
        assert!(gone.is_err());
        // ...and the next one still gets that fetch's keys.
        assert!(keys.refresh_for_unknown_kid("k2").await.contains("k2"));
        assert_eq!(idp.jwks_requests(), 2);
    }

    #[tokio::test]
    async fn failed_fetches_keep_the_last_good_keys() {
        let mut idp = Idp::start().await;
        let keys = cache(&idp, config(&idp));
        keys.refresh().await.unwrap();
        let good = keys.stats();
        assert!(!good.stale && good.last_error.is_none() && good.keys == 1);
        assert!(good.last_success.is_some_and(|t| t > 1_700_000_000));

        for (mode, outcome) in [
            (Mode::BadJson, FetchOutcome::Invalid),
            (Mode::EmptySet, FetchOutcome::Empty),
            (Mode::ServerError, FetchOutcome::Error),
        ] {
            idp.set_mode(mode);
            assert!(keys.refresh().await.is_err(), "{mode:?}");
            assert!(keys.current().contains("k1"), "{mode:?} replaced the keys");
            assert_eq!(keys.stats().fetches(outcome), 1, "{mode:?}");
        }
        idp.set_mode(Mode::Normal);
        keys.refresh().await.unwrap();
        assert!(!keys.stats().stale);

        idp.down().await;
        let err = keys.refresh().await.unwrap_err();
        assert!(
            matches!(err, KeyFetchError::Fetch(FetchError::Connect { .. })),
            "{err:?}"
        );
        let stats = keys.stats();
        assert!(keys.current().contains("k1"));
        assert!(stats.stale);
        assert_eq!(stats.keys, 1);
        assert!(stats.last_success >= good.last_success);
        assert!(
            stats
                .last_error
                .as_deref()
                .unwrap()
                .contains("cannot connect")
        );
        assert_eq!(stats.fetches(FetchOutcome::Success), 2);
        assert_eq!(stats.fetches(FetchOutcome::Error), 2);
        // A failure retries sooner than the normal schedule.
        assert!(keys.next_refresh_in() <= DEFAULT_RETRY_AFTER_FAILURE);
        assert!(keys.next_refresh_in() > DEFAULT_RETRY_AFTER_FAILURE - Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_failure_streak_warns_once() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = crate::telemetry::subscriber(
            crate::telemetry::LogFormat::Json,
            tracing_subscriber::EnvFilter::new("info"),
            false,
            move || writer.clone(),
        );
        crate::testing::capture_logs_reliably();
        let _guard = tracing::subscriber::set_default(subscriber);
        let idp = Idp::start().await;
        // Parallel tests without a subscriber can leave these callsites
        // cached as "never" while registering them: hit them once, then
        // recompute with this subscriber in place, and read what follows.
        let warm_up = cache(&idp, config(&idp));
        idp.set_mode(Mode::ServerError);
        warm_up.refresh().await.unwrap_err();
        idp.set_mode(Mode::Normal);
        warm_up.refresh().await.unwrap();
        tracing::callsite::rebuild_interest_cache();
        let from = out.bytes().len();

        let keys = cache(&idp, config(&idp));
        keys.refresh().await.unwrap();
        idp.set_mode(Mode::ServerError);
        for _ in 0..3 {
            keys.refresh().await.unwrap_err();
        }
        idp.set_mode(Mode::Normal);
        keys.refresh().await.unwrap();
        idp.set_mode(Mode::BadJson);
        keys.refresh().await.unwrap_err();

        let text = String::from_utf8(out.bytes()[from..].to_vec()).unwrap();
        let warnings: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("fetch failed"))
            .collect();
        assert_eq!(warnings.len(), 2, "{text}");
        assert!(
            warnings[0].contains(&idp.issuer) && warnings[0].contains("500"),
            "{text}"
        );
        assert!(warnings[1].contains("invalid key set"), "{text}");
        assert_eq!(text.matches("fetched again").count(), 1, "{text}");
    }

    #[tokio::test]
    async fn max_age_sets_the_schedule_within_bounds() {
        let idp = Idp::start().await;
        let keys = cache(&idp, config(&idp));
        let near = |d: Duration, want: Duration| d <= want && d + Duration::from_secs(5) > want;
        for (header, want) in [
            (None, DEFAULT_REFRESH),
            (Some("public, max-age=120"), Duration::from_secs(120)),
            (Some("max-age=5"), MIN_REFRESH),
            (Some("max-age=99999999"), MAX_REFRESH),
            (Some("no-cache"), MIN_REFRESH),
        ] {
            idp.set_cache_control(header);
            keys.refresh().await.unwrap();
            let next = keys.next_refresh_in();
            assert!(near(next, want), "{header:?}: {next:?}, want {want:?}");
        }
    }

    #[test]
    fn refresh_interval_reads_max_age() {
        let d = |s: u64| Duration::from_secs(s);
        let interval = |cc| refresh_interval(cc, d(300), d(60), d(86_400));
        assert_eq!(interval(None), d(300));
        assert_eq!(interval(Some("public")), d(300));
        assert_eq!(interval(Some("max-age=abc")), d(300));
        assert_eq!(interval(Some("Max-Age=\"600\"")), d(600));
        assert_eq!(interval(Some("max-age=600, no-store")), d(60));
        assert_eq!(interval(Some("max-age=0")), d(60));
        assert_eq!(interval(Some("max-age=31536000")), d(86_400));
    }

    #[tokio::test]
    async fn run_refreshes_on_schedule_until_shutdown() {
        let idp = Idp::start().await;
        let mut c = config(&idp);
        c.min_refresh = Duration::from_millis(50);
        idp.set_cache_control(Some("max-age=0"));
        let keys = cache(&idp, c);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(keys.clone().run(async {
            let _ = stopped.await;
        }));
        tokio::time::sleep(Duration::from_millis(400)).await;
        // The first fetch at once, then one about every 50 ms.
        let fetched = idp.jwks_requests();
        assert!((3..=10).contains(&fetched), "{fetched} fetches");
        assert!(keys.current().contains("k1"));
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("run stops on shutdown")
            .unwrap();
        let after = idp.jwks_requests();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(idp.jwks_requests(), after);
    }
}
