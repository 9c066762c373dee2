//! Logs (tracing) and metrics (Prometheus/OpenMetrics text).

use std::sync::OnceLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

pub mod log_format;
pub mod log_writer;

/// Log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// Flushes the log buffer when dropped; hold it until exit.
pub type LogGuard = log_writer::Flusher;

/// Installs the global subscriber. `RUST_LOG` wins over `level` when set.
/// Lines are laid out by [`log_format`].
///
/// Lines go to a shared in-memory buffer that a background thread writes to
/// stderr every [`log_writer::FLUSH_EVERY`]. A per-request line then costs
/// a formatted copy, not a write syscall and a thread wake-up: with one
/// line per review, unbuffered stderr more than doubled the webhook's CPU
/// per request. When the buffer is full the caller writes it out itself,
/// so lines wait but are never dropped (review and access logs are an
/// audit trail).
pub fn init_logging(format: LogFormat, level: &str) -> LogGuard {
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, flusher) = log_writer::batched(std::io::stderr());
    // A second init (tests) is harmless; ignore it.
    let _ = subscriber(format, filter, ansi, writer).try_init();
    flusher
}

/// The subscriber [`init_logging`] installs, writing its lines to `writer`
/// (tests capture production's lines through it). `ansi` colours the level
/// of text lines.
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> tracing_subscriber::fmt::Subscriber<log_format::LineFields, log_format::LineFormat, EnvFilter, W>
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let json = format == LogFormat::Json;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(ansi && !json)
        .fmt_fields(log_format::LineFields { json })
        .event_format(log_format::LineFormat { json })
        .finish()
}

/// `result` label of reload counters.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReloadResult {
    /// The new content is in use.
    Success,
    /// The new content was refused; the previous one stays in use.
    Failure,
}

impl EncodeLabelValue for ReloadResult {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            ReloadResult::Success => "success",
            ReloadResult::Failure => "failure",
        })
    }
}

/// Labels of a reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// Outcome.
    pub result: ReloadResult,
}

/// Labels of the review counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// `validate` or `mutate`.
    pub webhook: &'static str,
    /// CREATE, UPDATE, DELETE, CONNECT, or `unknown` for unreadable bodies
    /// and anything else, so a caller cannot mint label values.
    pub operation: &'static str,
    /// allowed, denied, warned, patched, exempt, invalid or bad_request.
    pub verdict: &'static str,
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// `validate` or `mutate`.
    pub webhook: &'static str,
}

/// The webhook's metrics.
pub struct WebhookMetrics {
    /// Admission reviews answered.
    pub reviews: Family<ReviewLabels, Counter>,
    /// Time from body received to response built.
    pub duration: Family<HookLabels, Histogram>,
    /// Policy file reloads.
    pub policy_reloads: Family<ReloadLabels, Counter>,
    /// Serving certificate reloads.
    pub certificate_reloads: Family<ReloadLabels, Counter>,
    /// Handles to the series a review touches, found in the families once:
    /// a family lookup hashes the labels with SipHash under a lock, on
    /// every review. A handle shares its series with the family.
    review_series: [OnceLock<Counter>; REVIEW_SERIES],
    duration_series: [OnceLock<Histogram>; HOOKS.len()],
}

const HOOKS: [&str; 2] = ["validate", "mutate"];
const OPERATIONS: [&str; 5] = ["CREATE", "UPDATE", "DELETE", "CONNECT", "unknown"];
const VERDICTS: [&str; 7] = [
    "allowed",
    "denied",
    "warned",
    "patched",
    "exempt",
    "invalid",
    "bad_request",
];
const REVIEW_SERIES: usize = HOOKS.len() * OPERATIONS.len() * VERDICTS.len();

/// Where `value` is in `set`; label values are compared by content.
fn position(set: &[&str], value: &str) -> Option<usize> {
    set.iter().position(|v| *v == value)
}

impl WebhookMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reviews: Family::default(),
            duration: Family::new_with_constructor(|| {
                // 5 µs .. ~2.6 s: admission is microseconds, the API server
                // gives up at timeoutSeconds.
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    5e-6, 4.0, 10,
                ))
            }),
            policy_reloads: Family::default(),
            certificate_reloads: Family::default(),
            review_series: std::array::from_fn(|_| OnceLock::new()),
            duration_series: std::array::from_fn(|_| OnceLock::new()),
        };
        registry.register(
            "tlsward_webhook_reviews",
            "Admission reviews answered, by webhook, operation and verdict",
            m.reviews.clone(),
        );
        registry.register(
            "tlsward_webhook_review_duration_seconds",
            "Time to decide an admission review",
            m.duration.clone(),
        );
        registry.register(
            "tlsward_policy_reloads",
            "Policy file reloads by result",
            m.policy_reloads.clone(),
        );
        registry.register(
            "tlsward_certificate_reloads",
            "Serving certificate reloads by result",
            m.certificate_reloads.clone(),
        );
        m
    }

    /// Counts a review in `tlsward_webhook_reviews`.
    pub fn count_review(&self, labels: ReviewLabels) {
        let slot = position(&HOOKS, labels.webhook)
            .zip(position(&OPERATIONS, labels.operation))
            .zip(position(&VERDICTS, labels.verdict))
            .map(|((h, o), v)| (h * OPERATIONS.len() + o) * VERDICTS.len() + v);
        match slot {
            Some(i) => self.review_series[i]
                .get_or_init(|| self.reviews.get_or_create(&labels).clone())
                .inc(),
            // A label value outside the sets above: counted, not cached.
            None => self.reviews.get_or_create(&labels).inc(),
        };
    }

    /// Records a review's duration in `tlsward_webhook_review_duration_seconds`.
    pub fn observe_duration(&self, webhook: &'static str, seconds: f64) {
        let labels = HookLabels { webhook };
        match position(&HOOKS, webhook) {
            Some(i) => self.duration_series[i]
                .get_or_init(|| self.duration.get_or_create(&labels).clone())
                .observe(seconds),
            None => self.duration.get_or_create(&labels).observe(seconds),
        }
    }
}

/// Renders a registry in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// The content type of [`render`]'s output.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic Prometheus text format's content type.
pub const PROMETHEUS_TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text as the classic Prometheus text format, for
/// scrapers that do not ask for OpenMetrics (and promtool): counter
/// families are named with their `_total` sample name, and `# UNIT` and
/// `# EOF` go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|p| {
            let rest = line.strip_prefix(p)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{p}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// What every long-running role serves on its admin port.
pub struct Admin {
    /// The role's metrics.
    pub registry: Registry,
    /// Flipped once the role is serving.
    pub ready: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// `/healthz`, `/readyz` and `/metrics` (OpenMetrics when asked for, else
/// the classic text format).
pub fn admin_router(admin: std::sync::Arc<Admin>) -> axum::Router {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::routing::get;
    use std::sync::atomic::Ordering;
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(|State(a): State<std::sync::Arc<Admin>>| async move {
                if a.ready.load(Ordering::Acquire) {
                    (StatusCode::OK, "ok\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .route(
            "/metrics",
            get(
                |State(a): State<std::sync::Arc<Admin>>, headers: HeaderMap| async move {
                    let om = render(&a.registry);
                    let wants_om = headers
                        .get(header::ACCEPT)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.contains("application/openmetrics-text"));
                    if wants_om {
                        ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], om)
                    } else {
                        (
                            [(header::CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE)],
                            to_prometheus_text(&om),
                        )
                    }
                },
            ),
        )
        .with_state(admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_names_counter_families_with_total() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 2\n# HELP b Gauge.\n# TYPE b gauge\n# UNIT b seconds\nb 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 2\n# HELP b Gauge.\n# TYPE b gauge\nb 1\n"
        );
    }

    #[test]
    fn cached_review_series_are_the_families_series() {
        let mut registry = Registry::default();
        let m = WebhookMetrics::register(&mut registry);
        let labels = |webhook, operation, verdict| ReviewLabels {
            webhook,
            operation,
            verdict,
        };
        for _ in 0..3 {
            m.count_review(labels("validate", "CREATE", "allowed"));
        }
        m.count_review(labels("mutate", "unknown", "bad_request"));
        // Outside the cached sets: still counted.
        m.count_review(labels("validate", "CREATE", "novel"));
        m.observe_duration("validate", 0.001);
        m.observe_duration("validate", 0.002);
        m.observe_duration("other", 0.003);
        let text = render(&registry);
        for line in [
            r#"tlsward_webhook_reviews_total{webhook="validate",operation="CREATE",verdict="allowed"} 3"#,
            r#"tlsward_webhook_reviews_total{webhook="mutate",operation="unknown",verdict="bad_request"} 1"#,
            r#"tlsward_webhook_reviews_total{webhook="validate",operation="CREATE",verdict="novel"} 1"#,
            r#"tlsward_webhook_review_duration_seconds_count{webhook="validate"} 2"#,
            r#"tlsward_webhook_review_duration_seconds_count{webhook="other"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Nothing is exported for series never touched.
        assert!(!text.contains("DELETE"), "{text}");
    }
}

/// Labels of the reconcile counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or `failure`.
    pub result: &'static str,
}

/// Labels of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The Ready condition's reason, or `ApiError`.
    pub reason: String,
}

/// Labels of the trust-anchor expiry gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnchorLabels {
    /// The policy's namespace.
    pub namespace: String,
    /// The policy's name.
    pub policy: String,
    /// `sha256:<hex>` of the anchor.
    pub fingerprint: String,
}

/// The operator's metrics.
pub struct OperatorMetrics {
    /// Reconciles by result.
    pub reconciles: Family<ResultLabels, Counter>,
    /// Reconcile duration.
    pub duration: Histogram,
    /// Failed reconciles by reason.
    pub failures: Family<ReasonLabels, Counter>,
    /// notAfter of every trust anchor in a written bundle, as a Unix time.
    pub anchor_expiry: Family<AnchorLabels, prometheus_client::metrics::gauge::Gauge>,
}

impl OperatorMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            duration: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.001, 2.0, 14,
            )),
            failures: Family::default(),
            anchor_expiry: Family::default(),
        };
        registry.register(
            "tlsward_operator_reconciles",
            "ClientAuthPolicy reconciles by result",
            m.reconciles.clone(),
        );
        registry.register(
            "tlsward_operator_reconcile_duration_seconds",
            "Time to reconcile one ClientAuthPolicy",
            m.duration.clone(),
        );
        registry.register(
            "tlsward_operator_reconcile_failures",
            "Failed ClientAuthPolicy reconciles by reason",
            m.failures.clone(),
        );
        registry.register(
            "tlsward_trust_anchor_expiry_timestamp_seconds",
            "notAfter of each trust anchor in a ClientAuthPolicy bundle, as a Unix timestamp",
            m.anchor_expiry.clone(),
        );
        m
    }
}

/// Labels of the handshake counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    /// `success` or `failure`.
    pub result: &'static str,
    /// Empty on success; unknown_ca, expired, revoked, not_allowed,
    /// no_certificate, unknown_sni, ... on failure.
    pub reason: &'static str,
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostCodeLabels {
    /// The served host (`unknown` when none matched).
    pub host: String,
    /// The HTTP status code.
    pub code: u16,
}

/// Labels of the certificate expiry gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ExpiryLabels {
    /// The served host.
    pub host: String,
    /// The TLS Secret, or the policy and anchor fingerprint.
    pub secret: String,
}

/// The proxy's metrics.
pub struct ProxyMetrics {
    /// Requests by host and status code.
    pub requests: Family<HostCodeLabels, Counter>,
    /// Request latency, from head received to response head sent.
    pub request_duration: Histogram,
    /// TLS handshakes by result and reason.
    pub handshakes: Family<HandshakeLabels, Counter>,
    /// Connections open now.
    pub active_connections: prometheus_client::metrics::gauge::Gauge,
    /// Snapshot reloads by result (failure: some object was not applied).
    pub reloads: Family<ReloadLabels, Counter>,
    /// Objects the current snapshot could not apply as written.
    pub config_problems: prometheus_client::metrics::gauge::Gauge,
    /// notAfter of every served certificate and trust anchor.
    pub certificate_expiry: Family<ExpiryLabels, prometheus_client::metrics::gauge::Gauge>,
}

impl ProxyMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            request_duration: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.0001, 2.5, 14),
            ),
            handshakes: Family::default(),
            active_connections: Default::default(),
            reloads: Family::default(),
            config_problems: Default::default(),
            certificate_expiry: Family::default(),
        };
        registry.register(
            "tlsward_proxy_requests",
            "Requests by host and status code",
            m.requests.clone(),
        );
        registry.register(
            "tlsward_proxy_request_duration_seconds",
            "Time from request head to response head",
            m.request_duration.clone(),
        );
        registry.register(
            "tlsward_proxy_tls_handshakes",
            "TLS handshakes by result and reason",
            m.handshakes.clone(),
        );
        registry.register(
            "tlsward_proxy_active_connections",
            "Client connections open now",
            m.active_connections.clone(),
        );
        registry.register(
            "tlsward_proxy_reloads",
            "Configuration reloads by result",
            m.reloads.clone(),
        );
        registry.register(
            "tlsward_proxy_config_problems",
            "Objects the current configuration could not apply as written",
            m.config_problems.clone(),
        );
        registry.register(
            "tlsward_certificate_expiry_timestamp_seconds",
            "notAfter of each served certificate and trust anchor, as a Unix timestamp",
            m.certificate_expiry.clone(),
        );
        m
    }
}
