//! Logs (tracing) and metrics (Prometheus/OpenMetrics text).

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::clientauth::FailureReason;
use crate::tls::HandshakeFailure;

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
/// a formatted copy, not a write syscall and a thread wake-up, which cost
/// more than the review itself under load (docs/benchmarks.md).
/// When the buffer is full the caller writes it out itself, so lines wait
/// but are never dropped (review and access logs are an audit trail).
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

/// The `result` label of reload and reconcile counters.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// `success`: the new content is in use; the policy is Ready.
    Success,
    /// `failure`: the new content was refused and the previous one stays in
    /// use; the policy is not Ready, or the API server failed a request.
    Failure,
}

impl EncodeLabelValue for Outcome {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        })
    }
}

/// Labels of a reload counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// Outcome.
    pub result: Outcome,
}

/// An error and its causes on one line, for a log field: what anyhow's
/// `{:#}` writes, except that a cause is left out when the text so far
/// already ends with it. tlsward's errors quote their cause in their own
/// message and also return it from `source()`, so `{:#}` would say it twice.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
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
    fn an_error_chain_names_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("p.yaml: {source}")]
        struct Quoting {
            source: std::io::Error,
        }
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        // A cause the message already quotes is not repeated...
        let e = anyhow::Error::new(Quoting { source: io() }).context("loading --policy");
        assert_eq!(error_chain(e.as_ref()), "loading --policy: p.yaml: gone");
        // ...one it does not quote is added, as `{:#}` adds it.
        let e = anyhow::Error::new(io()).context("reading");
        assert_eq!(error_chain(e.as_ref()), format!("{e:#}"));
    }

    #[test]
    fn prometheus_text_names_counter_families_with_total() {
        let om = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{x=\"1\"} 2\n# HELP b Gauge.\n# TYPE b gauge\n# UNIT b seconds\nb 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{x=\"1\"} 2\n# HELP b Gauge.\n# TYPE b gauge\nb 1\n"
        );
    }
}

/// Labels of the reconcile counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// Outcome.
    pub result: Outcome,
}

/// `reason` label of the reconcile failure counter.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReconcileFailure {
    /// The policy is not Ready: the Ready condition's reason, as
    /// [`FailureReason::as_str`] spells it.
    NotReady(FailureReason),
    /// `ApiError`: the API server refused or failed a request.
    ApiError,
}

impl EncodeLabelValue for ReconcileFailure {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(match self {
            ReconcileFailure::NotReady(reason) => reason.as_str(),
            ReconcileFailure::ApiError => "ApiError",
        })
    }
}

/// Labels of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why the reconcile failed.
    pub reason: ReconcileFailure,
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

/// Labels of the handshake counter: `result` and `reason`.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum HandshakeLabels {
    /// `result="success"`, with an empty `reason`.
    Success,
    /// `result="failure"`, with the reason as [`HandshakeFailure::as_str`]
    /// spells it.
    Failure(HandshakeFailure),
}

impl EncodeLabelSet for HandshakeLabels {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel;
        let (result, reason) = match self {
            HandshakeLabels::Success => ("success", ""),
            HandshakeLabels::Failure(why) => ("failure", why.as_str()),
        };
        ("result", result).encode(encoder.encode_label())?;
        ("reason", reason).encode(encoder.encode_label())
    }
}

impl EncodeLabelValue for crate::conn::CloseReason {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        self.as_str().encode(encoder)
    }
}

/// Labels of the connections-closed counters (proxy and webhook).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CloseLabels {
    /// The limit that closed the connection.
    pub reason: crate::conn::CloseReason,
}

/// Labels of the upstream request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    /// `http`, `https`, `grpc` or `grpcs` (the backend-protocol).
    pub protocol: &'static str,
    /// `ok` (a response head came back), `error` or `timeout`.
    pub result: &'static str,
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

/// Labels of the refused-host gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostErrorLabels {
    /// The host whose new configuration was refused.
    pub host: String,
    /// Why, e.g. `invalid_crl`.
    pub reason: &'static str,
    /// What it serves instead: `last_good` or `none`.
    pub serving: &'static str,
}

/// Labels of the per-Ingress unsupported-annotations gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct IngressLabels {
    /// The Ingress's namespace.
    pub namespace: String,
    /// The Ingress's name.
    pub ingress: String,
}

/// How a request was authenticated (the `method` label).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum AuthMethod {
    /// `bearer`: a bearer token.
    Bearer,
    /// `session`: a browser-login session cookie.
    Session,
    /// `login`: the login flow itself (redirect, callback, logout).
    Login,
    /// `public`: a public path.
    Public,
}

impl AuthMethod {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Bearer => "bearer",
            AuthMethod::Session => "session",
            AuthMethod::Login => "login",
            AuthMethod::Public => "public",
        }
    }
}

impl EncodeLabelValue for AuthMethod {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        self.as_str().encode(encoder)
    }
}

/// Labels of the authentication counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// The served host.
    pub host: String,
    /// How the request tried to authenticate.
    pub method: AuthMethod,
    /// `ok`, or why not (`token_expired`, `bad_signature`, ...).
    pub result: &'static str,
}

/// Labels of the per-issuer fetch counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerResultLabels {
    issuer: String,
    result: &'static str,
}

/// Labels of the per-issuer gauges.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

/// The issuers' key caches, read at scrape time: their counters live in
/// the caches, which come and go with the policies.
#[derive(Clone, Debug, Default)]
pub struct IssuerMetrics {
    caches: std::sync::Arc<std::sync::Mutex<Vec<std::sync::Arc<crate::oidc::keys::KeyCache>>>>,
}

impl IssuerMetrics {
    /// Reports `cache` from now on.
    pub fn track(&self, cache: std::sync::Arc<crate::oidc::keys::KeyCache>) {
        if let Ok(mut caches) = self.caches.lock() {
            caches.push(cache);
        }
    }

    /// Stops reporting `cache`.
    pub fn forget(&self, cache: &std::sync::Arc<crate::oidc::keys::KeyCache>) {
        if let Ok(mut caches) = self.caches.lock() {
            caches.retain(|c| !std::sync::Arc::ptr_eq(c, cache));
        }
    }
}

impl prometheus_client::collector::Collector for IssuerMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::gauge::Gauge;
        let stats: Vec<_> = match self.caches.lock() {
            Ok(c) => c.iter().map(|c| c.stats()).collect(),
            Err(_) => return Ok(()),
        };
        let fetches = Family::<IssuerResultLabels, Counter>::default();
        let keys = Family::<IssuerLabels, Gauge>::default();
        let last = Family::<IssuerLabels, Gauge>::default();
        let stale = Family::<IssuerLabels, Gauge>::default();
        for s in &stats {
            for (outcome, n) in s.fetches {
                fetches
                    .get_or_create(&IssuerResultLabels {
                        issuer: s.issuer.clone(),
                        result: outcome.as_str(),
                    })
                    .inc_by(n);
            }
            let l = IssuerLabels {
                issuer: s.issuer.clone(),
            };
            keys.get_or_create(&l).set(s.keys as i64);
            stale.get_or_create(&l).set(i64::from(s.stale));
            if let Some(t) = s.last_success {
                last.get_or_create(&l).set(t);
            }
        }
        let families: [(&str, &str, &dyn EncodeMetric); 4] = [
            (
                "tlsward_oidc_jwks_fetches",
                "Key-set fetches per issuer, by result",
                &fetches,
            ),
            ("tlsward_oidc_keys", "Signing keys held per issuer", &keys),
            (
                "tlsward_oidc_jwks_last_success_timestamp_seconds",
                "When each issuer's keys were last fetched, as a Unix timestamp",
                &last,
            ),
            (
                "tlsward_oidc_jwks_stale",
                "1 while an issuer's last key fetch failed and older keys are served",
                &stale,
            ),
        ];
        for (name, help, metric) in families {
            let m = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
            metric.encode(m)?;
        }
        Ok(())
    }
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
    /// 1 for each host whose new configuration is refused, by reason and by
    /// what it serves instead: what an alert on a stale CRL fires on.
    pub host_errors: Family<HostErrorLabels, prometheus_client::metrics::gauge::Gauge>,
    /// notAfter of every served certificate and trust anchor.
    pub certificate_expiry: Family<ExpiryLabels, prometheus_client::metrics::gauge::Gauge>,
    /// Per served Ingress, how many of its ingress-nginx annotations the
    /// proxy does not implement; series only for Ingresses with some.
    pub unsupported_annotations: Family<IngressLabels, prometheus_client::metrics::gauge::Gauge>,
    /// Authentication results by host, method and result.
    pub authentications: Family<AuthLabels, Counter>,
    /// Connections closed by a limit, by reason.
    pub connections_closed: Family<CloseLabels, Counter>,
    /// The issuers' key caches.
    pub issuers: IssuerMetrics,
    /// Requests sent upstream, by backend protocol and result.
    pub upstream_requests: Family<UpstreamLabels, Counter>,
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
            host_errors: Family::default(),
            certificate_expiry: Family::default(),
            unsupported_annotations: Family::default(),
            authentications: Family::default(),
            connections_closed: Family::default(),
            issuers: IssuerMetrics::default(),
            upstream_requests: Family::default(),
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
            "tlsward_proxy_host_config_errors",
            "Hosts whose current configuration is refused, by reason and by what is served instead (last_good or none)",
            m.host_errors.clone(),
        );
        registry.register(
            "tlsward_certificate_expiry_timestamp_seconds",
            "notAfter of each served certificate and trust anchor, as a Unix timestamp",
            m.certificate_expiry.clone(),
        );
        registry.register(
            "tlsward_proxy_ingress_unsupported_annotations",
            "Per served Ingress, its nginx.ingress.kubernetes.io annotations the proxy does not implement",
            m.unsupported_annotations.clone(),
        );
        registry.register(
            "tlsward_proxy_authentications",
            "Authentication results by host, method (bearer, session, login, public) and result (ok or why not)",
            m.authentications.clone(),
        );
        registry.register(
            "tlsward_proxy_connections_closed",
            "HTTPS connections closed by a limit, by reason (preface_timeout, header_timeout, idle_timeout, keepalive_timeout, max_age)",
            m.connections_closed.clone(),
        );
        registry.register(
            "tlsward_proxy_upstream_requests",
            "Requests sent to backends, by protocol (http, https, grpc, grpcs) and result (ok, error, timeout)",
            m.upstream_requests.clone(),
        );
        registry.register_collector(Box::new(m.issuers.clone()));
        m
    }

    /// Counts a connection a limit closed.
    pub fn connection_closed(&self, reason: crate::conn::CloseReason) {
        self.connections_closed
            .get_or_create(&CloseLabels { reason })
            .inc();
    }

    /// Counts one authentication result.
    pub fn auth(&self, host: &str, method: AuthMethod, result: &'static str) {
        self.authentications
            .get_or_create(&AuthLabels {
                host: host.to_string(),
                method,
                result,
            })
            .inc();
    }
}

#[cfg(test)]
mod label_tests {
    use super::*;

    /// The proxy's and the operator's label values, as scrapes (and the
    /// chart's alert rules) see them.
    #[test]
    fn proxy_and_operator_reasons_render_as_documented() {
        let mut registry = Registry::default();
        let proxy = ProxyMetrics::register(&mut registry);
        let operator = OperatorMetrics::register(&mut registry);
        proxy
            .handshakes
            .get_or_create(&HandshakeLabels::Success)
            .inc();
        proxy
            .handshakes
            .get_or_create(&HandshakeLabels::Failure(HandshakeFailure::UnknownCa))
            .inc();
        for result in [Outcome::Success, Outcome::Failure] {
            operator
                .reconciles
                .get_or_create(&ResultLabels { result })
                .inc();
        }
        for reason in [
            ReconcileFailure::NotReady(FailureReason::InvalidCrl),
            ReconcileFailure::ApiError,
        ] {
            operator
                .failures
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
        proxy
            .host_errors
            .get_or_create(&HostErrorLabels {
                host: "a.example.com".into(),
                reason: "invalid_crl",
                serving: "last_good",
            })
            .set(1);
        proxy.connection_closed(crate::conn::CloseReason::PrefaceTimeout);
        proxy.connection_closed(crate::conn::CloseReason::MaxAge);
        let text = render(&registry);
        for line in [
            r#"tlsward_proxy_host_config_errors{host="a.example.com",reason="invalid_crl",serving="last_good"} 1"#,
            r#"tlsward_proxy_connections_closed_total{reason="preface_timeout"} 1"#,
            r#"tlsward_proxy_connections_closed_total{reason="max_age"} 1"#,
            r#"tlsward_proxy_tls_handshakes_total{result="success",reason=""} 1"#,
            r#"tlsward_proxy_tls_handshakes_total{result="failure",reason="unknown_ca"} 1"#,
            r#"tlsward_operator_reconciles_total{result="success"} 1"#,
            r#"tlsward_operator_reconciles_total{result="failure"} 1"#,
            r#"tlsward_operator_reconcile_failures_total{reason="InvalidCRL"} 1"#,
            r#"tlsward_operator_reconcile_failures_total{reason="ApiError"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
