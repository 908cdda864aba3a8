//! Webhook metrics (registered once, held as handles). Two views: what became of each event
//! (`webhook_deliveries_total{result}`, every published event counted exactly once), and the
//! failed attempts that were retried (`webhook_delivery_retries_total{reason}`).

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// The handles the dispatcher updates.
#[derive(Clone)]
pub struct WebhookMetrics {
    pub delivered: IntCounter,
    pub rejected: IntCounter,
    pub expired: IntCounter,
    pub dropped_overflow: IntCounter,
    pub dropped_shutdown: IntCounter,
    /// `webhook_delivery_retries_total{reason}`, by reason.
    pub retry_timeout: IntCounter,
    pub retry_connection: IntCounter,
    pub retry_server_error: IntCounter,
    pub retry_throttled: IntCounter,
    /// `webhook_delivery_seconds`: publish → delivered (2xx), retries included.
    pub latency: Histogram,
    /// `webhook_retries_pending`: events waiting out a backoff before their next attempt.
    pub retries_pending: IntGauge,
    /// `webhook_queue_depth`: events queued, including the ones being delivered.
    pub queue_depth: IntGauge,
}

impl WebhookMetrics {
    pub fn new(registry: &Registry) -> Self {
        let outcomes = crate::metrics::counter_vec(
            registry,
            "webhook_deliveries_total",
            "Webhook events by final result: delivered (2xx), rejected (other 4xx or 3xx, not retried), \
             expired (retries ran out of webhooks.retry_for_seconds), dropped_overflow (queue cap), \
             dropped_shutdown (queued or published at shutdown)",
            &["result"],
        );
        let retries = crate::metrics::counter_vec(
            registry,
            "webhook_delivery_retries_total",
            "Failed webhook delivery attempts that will be retried, by reason (timeout, connection, \
             server_error = 5xx, throttled = 429)",
            &["reason"],
        );
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "webhook_delivery_seconds",
                "Time from publishing a webhook event to its successful delivery, retries included",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0]),
        )
        .expect("constant histogram options are valid");
        registry.register(Box::new(latency.clone())).expect("each metric name is registered once");
        let retries_pending = gauge(registry, "webhook_retries_pending", "Webhook events waiting to be retried");
        let queue_depth =
            gauge(registry, "webhook_queue_depth", "Webhook events queued for delivery, including those in flight");
        let outcome = |label: &str| outcomes.with_label_values(&[label]);
        let retry = |label: &str| retries.with_label_values(&[label]);
        Self {
            delivered: outcome("delivered"),
            rejected: outcome("rejected"),
            expired: outcome("expired"),
            dropped_overflow: outcome("dropped_overflow"),
            dropped_shutdown: outcome("dropped_shutdown"),
            retry_timeout: retry("timeout"),
            retry_connection: retry("connection"),
            retry_server_error: retry("server_error"),
            retry_throttled: retry("throttled"),
            latency,
            retries_pending,
            queue_depth,
        }
    }
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("constant gauge names are valid");
    registry.register(Box::new(g.clone())).expect("each metric name is registered once");
    g
}
