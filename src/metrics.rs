//! Prometheus metrics (prefix `switchboard_`). Handles are created once at start-up and kept in
//! plain structs, so hot paths increment a counter they already hold and never look one up by
//! name. No label carries a per-room or per-participant value.

use prometheus::{IntCounterVec, Opts, Registry};

/// Every metric the server exports, grouped by the part of the server that updates them.
pub struct Metrics {
    registry: Registry,
    pub tokens: TokenMetrics,
    pub http: HttpMetrics,
    /// `switchboard_runtime_alive_tasks`: tasks alive on the main tokio runtime, set when scraped
    /// (a soak's leak detector for sessions, connections and timers that never end).
    pub runtime_tasks: prometheus::IntGauge,
    /// `switchboard_cpu_seconds`: CPU time the process has used, to the microsecond, set when
    /// scraped (`process_cpu_seconds_total` counts whole seconds: too coarse for the CPU cost of
    /// a packet over a short load test).
    pub cpu_seconds: prometheus::Gauge,
}

/// Access token issuing and validation.
pub struct TokenMetrics {
    /// `switchboard_token_issues_total{result}`: `ok` or the reason it was refused.
    pub issues: IntCounterVec,
    /// `switchboard_token_validations_total{result}`: `ok` or the reason it was refused.
    pub validations: IntCounterVec,
}

/// The HTTPS API.
pub struct HttpMetrics {
    /// `switchboard_http_requests_total{route,status_class}` (route is the matched route pattern).
    pub requests: IntCounterVec,
    /// `switchboard_http_auth_failures_total{reason}`: management calls refused by HMAC checks.
    pub auth_failures: IntCounterVec,
    /// `switchboard_http_repeatable_requests_total{outcome}`: signed POSTs carrying a
    /// Repeatability-Request-ID: first (ran), repeat (answered from the first), mismatch (409),
    /// not_kept (ran unremembered: the cache was full).
    pub repeatable: IntCounterVec,
}

impl Metrics {
    /// Create and register every metric.
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("switchboard".to_owned()), None)
            .expect("a constant, valid prefix never fails registry creation");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("the process collector is registered once per registry");
        let tokens = TokenMetrics {
            issues: counter_vec(&registry, "token_issues_total", "Access tokens issued, by result", &["result"]),
            validations: counter_vec(
                &registry,
                "token_validations_total",
                "Access token validations, by result",
                &["result"],
            ),
        };
        let http = HttpMetrics {
            requests: counter_vec(
                &registry,
                "http_requests_total",
                "HTTP requests by route and status class",
                &["route", "status_class"],
            ),
            auth_failures: counter_vec(
                &registry,
                "http_auth_failures_total",
                "Management requests refused by request signing checks, by reason",
                &["reason"],
            ),
            repeatable: counter_vec(
                &registry,
                "http_repeatable_requests_total",
                "Signed POSTs with a Repeatability-Request-ID, by outcome (first, repeat, mismatch, not_kept)",
                &["outcome"],
            ),
        };
        let runtime_tasks = prometheus::IntGauge::new(
            "runtime_alive_tasks",
            "Tasks alive on the main async runtime (sessions, connections, timers), when scraped",
        )
        .expect("a constant, valid metric name");
        registry.register(Box::new(runtime_tasks.clone())).expect("each metric name is registered once");
        let cpu_seconds = prometheus::Gauge::new(
            "cpu_seconds",
            "CPU seconds (user and system) the process has used, to the microsecond, when scraped",
        )
        .expect("a constant, valid metric name");
        registry.register(Box::new(cpu_seconds.clone())).expect("each metric name is registered once");
        Self { registry, tokens, http, runtime_tasks, cpu_seconds }
    }

    /// The registry, for modules that add their own metric groups.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let encoder = prometheus::TextEncoder::new();
        encoder
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# metrics encoding failed: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Create and register a counter vector. Names are compile-time constants, so a failure is a
/// programming error caught by the first test that builds `Metrics`.
pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric names and labels are valid constants");
    registry.register(Box::new(c.clone())).expect("each metric name is registered once");
    c
}

/// Create and register a counter (names are constants, as for `counter_vec`).
pub fn counter(registry: &Registry, name: &str, help: &str) -> prometheus::IntCounter {
    let c = prometheus::IntCounter::new(name, help).expect("metric names are valid constants");
    registry.register(Box::new(c.clone())).expect("each metric name is registered once");
    c
}

/// CPU time this process has used, user and system.
pub fn process_cpu_seconds() -> Option<f64> {
    // SAFETY: getrusage writes one rusage into the zeroed value it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) } != 0 {
        return None;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(secs(usage.ru_utime) + secs(usage.ru_stime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prefixed_names() {
        let m = Metrics::new();
        m.tokens.validations.with_label_values(&["ok"]).inc();
        let text = m.render();
        assert!(text.contains("switchboard_token_validations_total{result=\"ok\"} 1"), "{text}");
    }
}
