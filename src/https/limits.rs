//! What a stranger can make the HTTPS listener hold: a number of connections in all and per client
//! address, and for each connection a deadline while it has no request in progress.
//!
//! A connection is admitted with a [`ConnectionPermit`] that lives inside its I/O object, so a
//! connection upgraded to a WebSocket keeps counting until the socket closes. [`Activity`] knows
//! whether a request is in progress and when the last one ended; the connection task closes the
//! connection when the deadline it computes passes.

use crate::signaling::client_addr::{IpRange, Key, key_of};
use prometheus::{IntCounterVec, IntGauge, Registry};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The `[http]` bounds on connections.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub max_per_address: u32,
    /// TLS handshake plus the first request head.
    pub header_timeout: Duration,
    /// Between requests on a kept-alive connection.
    pub idle_timeout: Duration,
    /// Peers exempt from `max_per_address` (their clients are behind them).
    pub trusted_proxies: Arc<[IpRange]>,
}

/// Why a connection was closed by the listener rather than by its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` reached.
    ServerFull,
    /// `max_connections_per_address` reached for this address.
    AddressFull,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::ServerFull => "server_full",
            Refusal::AddressFull => "address_full",
        }
    }
}

/// `switchboard_http_connections` and the counters of connections the listener ended.
#[derive(Clone)]
pub struct ConnectionMetrics {
    /// `switchboard_http_open_connections`: admitted and not yet closed.
    pub open: IntGauge,
    /// `switchboard_http_connections_refused_total{reason}`: server_full, address_full.
    pub refused: IntCounterVec,
    /// `switchboard_http_connections_timed_out_total{phase}`: header (TLS or first request head
    /// too slow), idle (no next request), body (a request body too slow; answered 408).
    pub timed_out: IntCounterVec,
    /// `switchboard_panics_total{site}` (`crate::panics`): requests whose handler panicked.
    pub panics: IntCounterVec,
}

impl ConnectionMetrics {
    pub fn register(registry: &Registry, panics: IntCounterVec) -> Self {
        let open = IntGauge::new("http_open_connections", "Open HTTPS connections, WebSocket sessions included")
            .expect("a constant, valid metric name");
        registry.register(Box::new(open.clone())).expect("each metric name is registered once");
        Self {
            open,
            panics,
            refused: crate::metrics::counter_vec(
                registry,
                "http_connections_refused_total",
                "HTTPS connections closed on accept because a connection limit was reached, by reason",
                &["reason"],
            ),
            timed_out: crate::metrics::counter_vec(
                registry,
                "http_connections_timed_out_total",
                "HTTPS connections or requests ended for being too slow, by phase (header, idle, body)",
                &["phase"],
            ),
        }
    }
}

/// Counts of open connections, in all and per address.
pub struct ConnectionLimits {
    limits: ListenerLimits,
    total: AtomicUsize,
    per_address: Mutex<HashMap<Key, u32>>,
    metrics: ConnectionMetrics,
}

impl ConnectionLimits {
    pub fn new(limits: ListenerLimits, metrics: ConnectionMetrics) -> Arc<Self> {
        Arc::new(Self { limits, total: AtomicUsize::new(0), per_address: Mutex::new(HashMap::new()), metrics })
    }

    pub fn limits(&self) -> &ListenerLimits {
        &self.limits
    }

    pub fn metrics(&self) -> &ConnectionMetrics {
        &self.metrics
    }

    /// Admit a connection from `peer`, or say which limit it hits (counted).
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let refuse = |r: Refusal| {
            self.metrics.refused.with_label_values(&[r.label()]).inc();
            Err(r)
        };
        let admitted = self
            .total
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < self.limits.max_connections).then_some(n + 1));
        if admitted.is_err() {
            return refuse(Refusal::ServerFull);
        }
        let exempt = self.limits.trusted_proxies.iter().any(|r| r.contains(peer));
        let key = if exempt { None } else { Some(key_of(peer)) };
        if let Some(key) = key {
            let mut map = self.per_address.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let count = map.entry(key).or_insert(0);
            if *count >= self.limits.max_per_address {
                drop(map);
                self.total.fetch_sub(1, Ordering::AcqRel);
                return refuse(Refusal::AddressFull);
            }
            *count += 1;
        }
        self.metrics.open.inc();
        Ok(ConnectionPermit { limits: Arc::clone(self), key })
    }

    /// Open connections counted against `peer`'s address.
    pub fn open_from(&self, peer: IpAddr) -> u32 {
        let map = self.per_address.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(&key_of(peer)).copied().unwrap_or(0)
    }

    fn release(&self, key: Option<Key>) {
        if let Some(key) = key {
            let mut map = self.per_address.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(count) = map.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&key);
                }
            }
        }
        self.total.fetch_sub(1, Ordering::AcqRel);
        self.metrics.open.dec();
    }
}

/// One admitted connection; dropping it gives its place back.
pub struct ConnectionPermit {
    limits: Arc<ConnectionLimits>,
    key: Option<Key>,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limits.release(self.key);
    }
}

/// Whether a connection has a request in progress, and since when it has had none.
pub struct Activity {
    origin: Instant,
    in_progress: AtomicU32,
    /// Milliseconds after `origin` when the last request ended; `u64::MAX` before the first.
    last_done_ms: AtomicU64,
}

/// The deadline a connection is held to now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// A request is in progress: the body and handler timeouts apply, not this one. Look again
    /// after the given instant.
    Busy(Instant),
    /// Close the connection if nothing starts before this instant.
    Idle { at: Instant, first: bool },
}

impl Activity {
    pub fn new(origin: Instant) -> Arc<Self> {
        Arc::new(Self { origin, in_progress: AtomicU32::new(0), last_done_ms: AtomicU64::new(u64::MAX) })
    }

    /// A request started; it counts as in progress until the guard drops.
    pub fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        RequestGuard { activity: Arc::clone(self) }
    }

    /// The deadline now, from the connection's limits.
    pub fn deadline(&self, now: Instant, limits: &ListenerLimits) -> Deadline {
        if self.in_progress.load(Ordering::Acquire) > 0 {
            return Deadline::Busy(now + limits.idle_timeout);
        }
        match self.last_done_ms.load(Ordering::Acquire) {
            u64::MAX => Deadline::Idle { at: self.origin + limits.header_timeout, first: true },
            ms => Deadline::Idle { at: self.origin + Duration::from_millis(ms) + limits.idle_timeout, first: false },
        }
    }
}

/// Marks a request in progress on its connection.
pub struct RequestGuard {
    activity: Arc<Activity>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.activity;
        let ms = u64::try_from(Instant::now().saturating_duration_since(a.origin).as_millis()).unwrap_or(u64::MAX - 1);
        a.last_done_ms.store(ms, Ordering::Release);
        a.in_progress.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_address: u32, trusted: &[&str]) -> Arc<ConnectionLimits> {
        let registry = Registry::new();
        let trusted: Vec<IpRange> = trusted.iter().map(|t| IpRange::parse(t).expect("test ranges parse")).collect();
        ConnectionLimits::new(
            ListenerLimits {
                max_connections: total,
                max_per_address: per_address,
                header_timeout: Duration::from_secs(10),
                idle_timeout: Duration::from_secs(60),
                trusted_proxies: trusted.into(),
            },
            ConnectionMetrics::register(&registry, crate::panics::register_metric(&registry)),
        )
    }

    #[test]
    fn an_address_gets_its_share_and_others_still_get_in() {
        let l = limits(10, 2, &[]);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = l.admit(a).unwrap();
        let _p2 = l.admit(a).unwrap();
        assert_eq!(l.admit(a).err(), Some(Refusal::AddressFull));
        let _p3 = l.admit(b).unwrap();
        drop(p1);
        let _p4 = l.admit(a).unwrap();
        assert_eq!(l.open_from(a), 2);
        assert_eq!(l.metrics.open.get(), 3);
        assert_eq!(l.metrics.refused.with_label_values(&["address_full"]).get(), 1);
    }

    #[test]
    fn ipv6_counts_per_64_and_the_total_is_a_hard_cap() {
        let l = limits(3, 2, &[]);
        let _a = l.admit("2001:db8::1".parse().unwrap()).unwrap();
        let _b = l.admit("2001:db8::ffff:2".parse().unwrap()).unwrap();
        assert_eq!(l.admit("2001:db8::3".parse().unwrap()).err(), Some(Refusal::AddressFull));
        let _c = l.admit("2001:db8:1::1".parse().unwrap()).unwrap();
        assert_eq!(l.admit("192.0.2.1".parse().unwrap()).err(), Some(Refusal::ServerFull));
        // A refusal by address gave back its place in the total.
        assert_eq!(l.total.load(Ordering::Acquire), 3);
    }

    #[test]
    fn trusted_proxies_are_not_limited_per_address() {
        let l = limits(10, 1, &["10.1.0.0/16"]);
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let permits: Vec<_> = (0..5).map(|_| l.admit(proxy).unwrap()).collect();
        assert_eq!(permits.len(), 5);
        drop(permits);
        assert_eq!(l.metrics.open.get(), 0);
    }

    #[test]
    fn the_deadline_is_the_header_timeout_then_the_idle_timeout_and_none_while_busy() {
        let origin = Instant::now();
        let lim = limits(1, 1, &[]).limits.clone();
        let a = Activity::new(origin);
        assert_eq!(a.deadline(origin, &lim), Deadline::Idle { at: origin + lim.header_timeout, first: true });
        let guard = a.begin();
        assert!(matches!(a.deadline(origin, &lim), Deadline::Busy(_)));
        drop(guard);
        match a.deadline(origin, &lim) {
            Deadline::Idle { at, first: false } => assert!(at >= origin + lim.idle_timeout),
            other => panic!("expected the idle deadline, got {other:?}"),
        }
    }
}
