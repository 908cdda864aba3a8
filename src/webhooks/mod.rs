//! Delivery of call-automation events to apps: CloudEvents POSTed to a call's `callbackUri`,
//! signed with the server's token signing key, in order per call, retried with backoff, and
//! never lost silently (every event ends counted in `webhook_deliveries_total{result}`).
//!
//! ```text
//! publish ──► Queues (FIFO per ordering key, capped) ──► one worker task per busy key
//!                                                          │ attempt (≤ max_concurrent at once)
//!                                                          ▼
//!                              2xx delivered · 5xx/429/timeout/connection → backoff, retry
//!                              other status → rejected · past retry_for → expired
//! ```
//!
//! API boundary: the call API calls `validate` when an app names a `callbackUri`, and `publish`
//! for each event; nothing here knows about calls.

mod allow_list;
mod backoff;
mod cloud_event;
mod metrics;
mod queue;
mod signing;

pub use crate::config::WebhooksSection as WebhookConfig;
pub use allow_list::{
    CallbackUri, HostPattern, HostPatternError, MAX_CALLBACK_URI_BYTES, WebhookError, validate as check_url,
};
pub use backoff::{BackoffPolicy, NextStep, next_step, parse_retry_after};
pub use cloud_event::{
    AcsEvent, EVENT_DATA_VERSION, EVENT_TYPE_PREFIX, EventSchema, cloud_event, delivery_body, delivery_body_in,
    event_grid_event, event_type,
};
pub use metrics::WebhookMetrics;
pub use signing::{DELIVERY_TOKEN_LIFETIME_SECS, body_sha256, delivery_claims, sign_delivery};

use crate::auth::KeyRing;
use bytes::Bytes;
use queue::{Pushed, Queued, Queues};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The webhook dispatcher. Cheap to clone: one `Arc` inside.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    allowed: Vec<HostPattern>,
    client: reqwest::Client,
    keys: Arc<KeyRing>,
    /// `iss` of delivery tokens: the server's public endpoint.
    issuer: String,
    backoff: BackoffPolicy,
    retry_for: Duration,
    queues: Mutex<Queues>,
    /// One permit per request in flight, over all keys.
    permits: Semaphore,
    metrics: WebhookMetrics,
    shutdown: CancellationToken,
    runtime: tokio::runtime::Handle,
}

/// How one attempt ended.
enum Attempt {
    Delivered,
    /// A status that is not worth retrying (3xx, 4xx but 429).
    Rejected(u16),
    Retry {
        reason: RetryReason,
        retry_after: Option<Duration>,
    },
}

#[derive(Debug, Clone, Copy)]
enum RetryReason {
    Timeout,
    Connection,
    /// A 5xx answer.
    ServerError,
    Throttled,
}

/// How an event's delivery ended.
enum Outcome {
    Delivered,
    Rejected(u16),
    Expired {
        attempts: u32,
        last: RetryReason,
    },
    /// Shutdown came first; `close` counts what was left.
    Cancelled,
}

impl Webhooks {
    /// A dispatcher with the config's limits, signing with `keys`' current key. Deliveries run
    /// on the runtime this is called from; they stop when `shutdown` is cancelled (what was still
    /// queued is then counted and logged as `dropped_shutdown`). The token issuer is `switchboard`
    /// until `with_issuer` names the public endpoint.
    ///
    /// Must be called inside a tokio runtime.
    pub fn new(
        config: &WebhookConfig,
        keys: Arc<KeyRing>,
        registry: &prometheus::Registry,
        shutdown: CancellationToken,
    ) -> Self {
        let request_timeout = Duration::from_millis(config.request_timeout_ms.get());
        let client = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            // A redirect could lead off the allow-list; a receiver that answers 3xx is rejected.
            .redirect(reqwest::redirect::Policy::none())
            // The allow-list names the hosts connected to; a proxy from the environment would
            // silently put another host in between.
            .no_proxy()
            .user_agent(concat!("switchboard-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a reqwest client with timeouts and no custom TLS or proxy always builds");
        let inner = Inner {
            allowed: config.allowed_hosts.clone(),
            client,
            keys,
            issuer: "switchboard".to_owned(),
            backoff: BackoffPolicy {
                initial: Duration::from_millis(config.initial_backoff_ms.get()),
                max: Duration::from_millis(config.max_backoff_ms.get()),
            },
            retry_for: Duration::from_secs(config.retry_for_seconds.get()),
            queues: Mutex::new(Queues::new(
                usize::try_from(config.max_queued_per_call.get()).unwrap_or(usize::MAX),
                usize::try_from(config.max_queued_total.get()).unwrap_or(usize::MAX),
            )),
            permits: Semaphore::new(usize::try_from(config.max_concurrent.get()).unwrap_or(Semaphore::MAX_PERMITS)),
            metrics: WebhookMetrics::new(registry),
            shutdown,
            runtime: tokio::runtime::Handle::try_current()
                .expect("Webhooks::new is called inside the server's tokio runtime"),
        };
        Self { inner: Arc::new(inner) }
    }

    /// Set the `iss` claim of delivery tokens (the server's public endpoint). Call it right
    /// after `new`, before the handle is cloned.
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("with_issuer is called right after new, before the handle is cloned or used")
            .issuer = issuer.to_owned();
        self
    }

    /// Checks a callbackUri a client gave: http(s) only, no user info, host on the allow-list
    /// (by name or IP literal; nothing is resolved). `Err` is a clear reason for a 400.
    pub fn validate(&self, uri: &str) -> Result<CallbackUri, WebhookError> {
        allow_list::validate(&self.inner.allowed, uri)
    }

    /// Queue an event for delivery. Never blocks, never loses it silently: deliveries to the
    /// same `ordering_key` (a callConnectionId) go out one at a time in publish order; a failed
    /// one is retried with exponential backoff until `retry_for` has passed, then dropped,
    /// counted and logged. Over a queue cap, or after shutdown, the event is dropped, counted
    /// and logged at once.
    pub fn publish(&self, to: &CallbackUri, ordering_key: &str, event: AcsEvent) {
        let event_id = uuid::Uuid::new_v4().to_string();
        let body = Bytes::from(delivery_body(&event, &event_id, time::OffsetDateTime::now_utc()));
        self.publish_body(to, ordering_key, event, event_id, body);
    }

    /// `publish` in the Event Grid schema, about `topic`.
    pub fn publish_event_grid(&self, to: &CallbackUri, ordering_key: &str, event: AcsEvent, topic: &str) {
        let event_id = uuid::Uuid::new_v4().to_string();
        let now = time::OffsetDateTime::now_utc();
        let body = Bytes::from(delivery_body_in(EventSchema::EventGrid, &event, &event_id, now, topic));
        self.publish_body(to, ordering_key, event, event_id, body);
    }

    fn publish_body(&self, to: &CallbackUri, ordering_key: &str, event: AcsEvent, event_id: String, body: Bytes) {
        let inner = &self.inner;
        let key: Arc<str> = Arc::from(ordering_key);
        let pushed = {
            let mut queues = inner.lock();
            let queued = Queued {
                seq: queues.next_seq(),
                to: to.clone(),
                ordering_key: key.clone(),
                event_id,
                event_name: event.name,
                body,
                published: Instant::now(),
            };
            let pushed = queues.push(queued);
            inner.metrics.queue_depth.set(gauge_value(queues.total()));
            pushed
        };
        match pushed {
            Pushed::Queued => {}
            Pushed::StartWorker => {
                let worker = self.inner.clone();
                inner.runtime.spawn(async move { worker.run_key(key).await });
            }
            Pushed::KeyFull | Pushed::TotalFull => {
                inner.metrics.dropped_overflow.inc();
                tracing::warn!(
                    call = ordering_key,
                    event = event.name,
                    cap = if pushed == Pushed::KeyFull {
                        "webhooks.max_queued_per_call"
                    } else {
                        "webhooks.max_queued_total"
                    },
                    "webhook event dropped: queue full"
                );
            }
            Pushed::Closed => {
                inner.metrics.dropped_shutdown.inc();
                tracing::warn!(call = ordering_key, event = event.name, "webhook event dropped: shutting down");
            }
        }
    }

    /// Stop delivering: drop what is queued, count it as `dropped_shutdown` and log how many.
    /// Returns that number (0 when already closed). Cancelling the `shutdown` token does the
    /// same from the delivery tasks; the server calls this to log it before it exits.
    pub fn close(&self) -> usize {
        self.inner.shutdown.cancel();
        self.inner.close()
    }

    /// Events queued, including those being delivered or waiting to be retried.
    pub fn queued(&self) -> usize {
        self.inner.lock().total()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // Critical sections only move plain data; a panic in one leaves nothing half-done that
        // later users could trip over.
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn close(&self) -> usize {
        let dropped = {
            let mut queues = self.lock();
            let dropped = queues.close();
            self.metrics.queue_depth.set(0);
            dropped
        };
        match dropped {
            None => 0,
            Some(0) => {
                tracing::info!("webhooks stopped; none undelivered");
                0
            }
            Some(n) => {
                self.metrics.dropped_shutdown.inc_by(n as u64);
                tracing::warn!(undelivered = n, "webhooks stopped with events undelivered");
                n
            }
        }
    }

    /// The worker of one ordering key: deliver its queue front to back, then end.
    async fn run_key(self: Arc<Self>, key: Arc<str>) {
        loop {
            let Some(event) = self.lock().front(&key) else { return };
            let outcome = self.deliver(&event).await;
            if matches!(outcome, Outcome::Cancelled) {
                self.close();
                return;
            }
            {
                let mut queues = self.lock();
                queues.finish(&key, event.seq);
                self.metrics.queue_depth.set(gauge_value(queues.total()));
            }
            self.record(&event, outcome);
        }
    }

    fn record(&self, event: &Queued, outcome: Outcome) {
        let (call, name, id) = (&*event.ordering_key, event.event_name, event.event_id.as_str());
        match outcome {
            Outcome::Delivered => {
                self.metrics.delivered.inc();
                self.metrics.latency.observe(event.published.elapsed().as_secs_f64());
                tracing::debug!(call, event = name, id, "webhook delivered");
            }
            Outcome::Rejected(status) => {
                self.metrics.rejected.inc();
                tracing::warn!(call, event = name, id, status, to = %event.to, "webhook rejected by the receiver; not retried");
            }
            Outcome::Expired { attempts, last } => {
                self.metrics.expired.inc();
                tracing::warn!(
                    call, event = name, id, attempts, last_failure = ?last, to = %event.to,
                    "webhook dropped: not delivered within webhooks.retry_for_seconds"
                );
            }
            Outcome::Cancelled => {}
        }
    }

    /// Deliver one event: attempts, with backoff between them, until an outcome.
    async fn deliver(&self, event: &Queued) -> Outcome {
        let deadline = event.published + self.retry_for;
        let mut retry: u32 = 0;
        loop {
            let attempt = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return Outcome::Cancelled,
                attempt = self.attempt_with_permit(event) => attempt,
            };
            let (reason, retry_after) = match attempt {
                Attempt::Delivered => return Outcome::Delivered,
                Attempt::Rejected(status) => return Outcome::Rejected(status),
                Attempt::Retry { reason, retry_after } => (reason, retry_after),
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let wait = match next_step(self.backoff.delay(retry, jitter()), retry_after, remaining) {
                NextStep::GiveUp => return Outcome::Expired { attempts: retry + 1, last: reason },
                NextStep::RetryAfter(wait) => wait,
            };
            self.count_retry(reason);
            tracing::debug!(call = &*event.ordering_key, event = event.event_name, ?reason, ?wait, "webhook retry");
            self.metrics.retries_pending.inc();
            let cancelled = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => true,
                () = tokio::time::sleep(wait) => false,
            };
            self.metrics.retries_pending.dec();
            if cancelled {
                return Outcome::Cancelled;
            }
            retry = retry.saturating_add(1);
        }
    }

    fn count_retry(&self, reason: RetryReason) {
        match reason {
            RetryReason::Timeout => self.metrics.retry_timeout.inc(),
            RetryReason::Connection => self.metrics.retry_connection.inc(),
            RetryReason::ServerError => self.metrics.retry_server_error.inc(),
            RetryReason::Throttled => self.metrics.retry_throttled.inc(),
        }
    }

    async fn attempt_with_permit(&self, event: &Queued) -> Attempt {
        let _permit = self.permits.acquire().await.expect("the permit semaphore is never closed");
        self.attempt(event).await
    }

    /// One signed POST.
    async fn attempt(&self, event: &Queued) -> Attempt {
        let now = SystemTime::now();
        let now_unix =
            now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let token = match sign_delivery(&self.keys, &self.issuer, event.to.as_str(), &event.body, now_unix) {
            Ok(token) => token,
            Err(e) => {
                // Signing with a loaded key does not fail in practice; treat it as transient.
                tracing::error!(error = %e, "webhook signing failed");
                return Attempt::Retry { reason: RetryReason::Connection, retry_after: None };
            }
        };
        let sent = self
            .client
            .post(event.to.url().clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(event.body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Attempt::Retry { reason: RetryReason::Timeout, retry_after: None },
            Err(e) => {
                tracing::debug!(error = %e, to = %event.to, "webhook attempt failed");
                return Attempt::Retry { reason: RetryReason::Connection, retry_after: None };
            }
        };
        let status = response.status();
        let retry_after = || {
            response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now))
        };
        if status.is_success() {
            Attempt::Delivered
        } else if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            Attempt::Retry { reason: RetryReason::Throttled, retry_after: retry_after() }
        } else if status.is_server_error() {
            Attempt::Retry { reason: RetryReason::ServerError, retry_after: retry_after() }
        } else {
            Attempt::Rejected(status.as_u16())
        }
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A uniform number in `0.0..1.0` for backoff jitter (not security-relevant).
fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
