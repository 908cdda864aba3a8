//! Shared state handed to every HTTP handler.

use crate::auth::{HmacVerifier, KeyRing, TokenIssuer, TokenLifetime, TokenVerifier};
use crate::identity::IdentityDirectory;
use crate::meeting_directory::MeetingDirectory;
use crate::metrics::Metrics;
use crate::room_directory::RoomDirectory;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cheap to clone: everything behind one `Arc`.
pub type AppState = Arc<Services>;

/// The services the HTTP layer reaches.
pub struct Services {
    pub directory: Arc<IdentityDirectory>,
    /// ACS rooms (`/rooms`); shares the identity directory's store.
    pub room_directory: Arc<RoomDirectory>,
    /// Meetings (`/meetings`); shares the same store.
    pub meeting_directory: Arc<MeetingDirectory>,
    pub issuer: TokenIssuer,
    pub verifier: Arc<TokenVerifier>,
    pub keys: Arc<KeyRing>,
    pub hmac: HmacVerifier,
    pub metrics: Arc<Metrics>,
    pub resource_id: String,
    pub default_lifetime: TokenLifetime,
    pub max_body_bytes: usize,
    /// How long a request body may take to arrive (`http.body_timeout_seconds`).
    pub body_timeout: std::time::Duration,
    /// `switchboard_http_connections_timed_out_total`, for bodies that arrive too slowly.
    pub timed_out: prometheus::IntCounterVec,
    pub health: Health,
    /// Signaling sessions started by `/signal`.
    pub signaling: Arc<crate::signaling::context::SignalingContext>,
    /// Call automation (`/calling/...`).
    pub automation: Arc<crate::call_automation::CallAutomation>,
    /// Whether `POST /dev/token` is served.
    pub dev_token_endpoint: bool,
    /// Call-automation event delivery to apps' `callbackUri`s.
    pub webhooks: crate::webhooks::Webhooks,
    /// The bearer token `/metrics` requires (`None`: public).
    pub metrics_token: Option<String>,
    /// Answers to repeatable requests (`Repeatability-Request-ID`), kept for their repeats.
    pub repeatability: Arc<super::repeatability::Repeatability>,
}

/// Liveness is implied by answering at all; readiness is set once every listener is up and
/// cleared when a graceful stop begins.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
