//! The webhook's Prometheus metrics. Label values come from the enums'
//! `label()` functions in [`review`](super::review), so a caller cannot
//! mint new ones.

use std::sync::OnceLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::review::{Hook, Operation, ReviewVerdict};
use crate::conn::CloseReason;
use crate::telemetry::{CloseLabels, ReloadLabels};

impl EncodeLabelValue for Hook {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.label())
    }
}

impl EncodeLabelValue for Operation {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.label())
    }
}

impl EncodeLabelValue for ReviewVerdict {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        std::fmt::Write::write_str(encoder, self.label())
    }
}

/// Labels of the review counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// `validate` or `mutate`.
    pub webhook: Hook,
    /// CREATE, UPDATE, DELETE, CONNECT, or `unknown` for unreadable bodies
    /// and anything else.
    pub operation: Operation,
    /// allowed, denied, warned, patched, exempt, invalid or bad_request.
    pub verdict: ReviewVerdict,
}

impl ReviewLabels {
    /// This series' place in [`WebhookMetrics`]'s handles.
    fn slot(&self) -> usize {
        let (h, o, v) = (
            self.webhook as usize,
            self.operation as usize,
            self.verdict as usize,
        );
        (h * Operation::ALL.len() + o) * ReviewVerdict::ALL.len() + v
    }
}

/// Labels of the latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    /// `validate` or `mutate`.
    pub webhook: Hook,
}

const REVIEW_SERIES: usize = Hook::ALL.len() * Operation::ALL.len() * ReviewVerdict::ALL.len();

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
    /// Connections closed by a limit, by reason.
    pub connections_closed: Family<CloseLabels, Counter>,
    /// Handles to the series a review touches, found in the families once:
    /// a family lookup hashes the labels with SipHash under a lock, on
    /// every review. A handle shares its series with the family.
    review_series: [OnceLock<Counter>; REVIEW_SERIES],
    duration_series: [OnceLock<Histogram>; Hook::ALL.len()],
}

impl WebhookMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reviews: Family::default(),
            duration: Family::new_with_constructor(|| {
                // 5 µs .. ~1.3 s: admission is microseconds, the API server
                // gives up at timeoutSeconds.
                Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                    5e-6, 4.0, 10,
                ))
            }),
            policy_reloads: Family::default(),
            certificate_reloads: Family::default(),
            connections_closed: Family::default(),
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
        registry.register(
            "tlsward_webhook_connections_closed",
            "HTTPS connections closed by a limit, by reason (preface_timeout, header_timeout, body_timeout, idle_timeout, keepalive_timeout, max_age)",
            m.connections_closed.clone(),
        );
        m
    }

    /// Counts a connection a limit closed.
    pub fn connection_closed(&self, reason: CloseReason) {
        self.connections_closed
            .get_or_create(&CloseLabels { reason })
            .inc();
    }

    /// Counts a review in `tlsward_webhook_reviews`.
    pub fn count_review(&self, labels: ReviewLabels) {
        self.review_series[labels.slot()]
            .get_or_init(|| self.reviews.get_or_create(&labels).clone())
            .inc();
    }

    /// Records a review's duration in `tlsward_webhook_review_duration_seconds`.
    pub fn observe_duration(&self, webhook: Hook, seconds: f64) {
        self.duration_series[webhook as usize]
            .get_or_init(|| self.duration.get_or_create(&HookLabels { webhook }).clone())
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::render;

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
            m.count_review(labels(
                Hook::Validate,
                Operation::Create,
                ReviewVerdict::Allowed,
            ));
        }
        m.count_review(labels(
            Hook::Mutate,
            Operation::Unknown,
            ReviewVerdict::BadRequest,
        ));
        m.observe_duration(Hook::Validate, 0.001);
        m.observe_duration(Hook::Validate, 0.002);
        m.observe_duration(Hook::Mutate, 0.003);
        m.connection_closed(CloseReason::BodyTimeout);
        let text = render(&registry);
        for line in [
            r#"tlsward_webhook_connections_closed_total{reason="body_timeout"} 1"#,
            r#"tlsward_webhook_reviews_total{webhook="validate",operation="CREATE",verdict="allowed"} 3"#,
            r#"tlsward_webhook_reviews_total{webhook="mutate",operation="unknown",verdict="bad_request"} 1"#,
            r#"tlsward_webhook_review_duration_seconds_count{webhook="validate"} 2"#,
            r#"tlsward_webhook_review_duration_seconds_count{webhook="mutate"} 1"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Nothing is exported for series never touched.
        assert!(!text.contains("DELETE"), "{text}");
    }

    /// The chart's alerts and dashboards select on these exact values, and
    /// every combination must count into a series of its own.
    #[test]
    fn every_label_combination_is_its_own_series_with_the_documented_values() {
        let hooks = ["validate", "mutate"];
        let operations = ["CREATE", "UPDATE", "DELETE", "CONNECT", "unknown"];
        let verdicts = [
            "allowed",
            "denied",
            "warned",
            "patched",
            "exempt",
            "invalid",
            "bad_request",
        ];
        let mut registry = Registry::default();
        let m = WebhookMetrics::register(&mut registry);
        for webhook in Hook::ALL {
            for operation in Operation::ALL {
                for verdict in ReviewVerdict::ALL {
                    m.count_review(ReviewLabels {
                        webhook,
                        operation,
                        verdict,
                    });
                }
            }
        }
        let text = render(&registry);
        let series = text
            .lines()
            .filter(|l| l.starts_with("tlsward_webhook_reviews_total{"))
            .count();
        assert_eq!(series, hooks.len() * operations.len() * verdicts.len());
        for h in hooks {
            for o in operations {
                for v in verdicts {
                    let line = format!(
                        r#"tlsward_webhook_reviews_total{{webhook="{h}",operation="{o}",verdict="{v}"}} 1"#
                    );
                    assert!(text.contains(&line), "{line} missing from\n{text}");
                }
            }
        }
    }
}
