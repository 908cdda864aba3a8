//! What every signaling session needs from the rest of the server.

use crate::auth::TokenVerifier;
use crate::calls::{CallRegistry, LiveCalls};
use crate::devices::DeviceRegistry;
use crate::identity::IdentityDirectory;
use crate::media::plane::WorkerHandle;
use crate::metrics::counter_vec;
use crate::rooms::Rooms;
use prometheus::IntCounterVec;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Shared by all signaling sessions.
pub struct SignalingContext {
    pub verifier: Arc<TokenVerifier>,
    pub directory: Arc<IdentityDirectory>,
    pub rooms: Arc<Rooms>,
    pub workers: Vec<WorkerHandle>,
    /// Rooms and workers driven together (admit, forget, role changes, removals).
    pub live: Arc<LiveCalls>,
    /// Connected devices by identity.
    pub devices: Arc<DeviceRegistry>,
    /// Live 1:1 calls.
    pub calls: Arc<CallRegistry>,
    /// The ACS resource ID (in every raw ID this server issues).
    pub resource_id: String,
    /// ACS Rooms: who may join which room, with which role, when.
    pub room_directory: Arc<crate::room_directory::RoomDirectory>,
    /// Meetings: their settings, join IDs, passcodes and links.
    pub meeting_directory: Arc<crate::meeting_directory::MeetingDirectory>,
    /// Wrong meeting IDs and passcodes, limited per address and per meeting.
    pub passcodes: super::PasscodeGuard,
    /// How long someone may wait in a meeting's lobby.
    pub lobby_timeout: Duration,
    /// Join attempts per second per client address (IPv6: per /64).
    pub join_limiter: super::client_addr::JoinLimiter,
    /// `[http] trusted_proxies`: peers whose `X-Forwarded-For` names the client (WebSocket).
    pub trusted_proxies: Arc<[super::client_addr::IpRange]>,
    pub messages_per_second: u32,
    /// Cancelled when the server begins a graceful stop.
    pub shutdown: CancellationToken,
    /// `switchboard_signaling_messages_total{result}`.
    pub messages: IntCounterVec,
    /// Largest signaling message.
    pub max_message_bytes: usize,
    /// How long a new session may go without registering or joining.
    pub register_timeout: std::time::Duration,
    /// `switchboard_panics_total{site}` (`crate::panics`): a session that panicked.
    pub panics: IntCounterVec,
    /// Round-robin counter for placing WebRTC sessions on workers.
    pub placement: std::sync::atomic::AtomicUsize,
}

impl SignalingContext {
    /// The worker for the next WebRTC session.
    pub fn next_worker(&self) -> usize {
        self.placement.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.workers.len().max(1)
    }

    pub fn messages_metric(registry: &prometheus::Registry) -> IntCounterVec {
        counter_vec(registry, "signaling_messages_total", "Signaling messages from clients, by result", &["result"])
    }
}

/// A token bucket for messages per session.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(per_second: u32, now: Instant) -> Self {
        let rate = f64::from(per_second.max(1));
        Self { rate, capacity: rate * 2.0, tokens: rate * 2.0, last: now }
    }

    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_bursts_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, t0);
        assert_eq!((0..30).filter(|_| b.take(t0)).count(), 20);
        assert!(b.take(t0 + Duration::from_millis(100)));
        assert!(!b.take(t0 + Duration::from_millis(100)));
    }
}
