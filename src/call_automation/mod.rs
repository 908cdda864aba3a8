//! Call automation: a trusted service controls calls over REST (shaped like ACS Call Automation)
//! and learns what happens through events sent to its callback URI.
//!
//! A **call connection** is the service's handle on one call. Its **leg** is a real participant:
//! a `switchboard::client` of this server's own QUIC listener, registered with a token the server
//! issued itself, so it is admitted, rung and answered like every client and can send and receive
//! media. `createCall` makes the leg start a call exactly as a client's `startCall` does (the
//! targets ring on every device through the `CallRegistry`); adding a participant rings one more
//! identity into that call (`CallRegistry::invite`); removing and muting go through `LiveCalls`,
//! the path of the Rooms API and of presenters.
//!
//! Design choice: the connection learns about the call from the leg's own signaling events
//! (`callStateChanged`, `participantJoined`/`Left`, `trackMuted`) rather than by observing the
//! room in-process. The leg sees exactly what a participant may see, through the one translation
//! every session uses, and a connection needs no second source of truth that could disagree
//! with what its leg experiences (e.g. an end of call the leg's session has not applied yet).

mod answering;
pub mod audio;
pub mod connection;
pub mod events;
pub mod incoming;
pub mod leg;
pub mod listener;
pub mod media;
mod media_ops;
mod participants;
pub mod speaker;

pub use connection::{CallConnection, ConnectionKind, ConnectionState};
pub use leg::{LegConnector, LegError};

use crate::calls::{AnswerError, CallError, CalleeState, ControlError, Muter};
use crate::client::ClientError;
use crate::identity::{IdentityId, RawIdError};
use crate::media::ids::ParticipantId;
use crate::metrics::counter_vec;
use crate::rooms::EndReason;
use crate::signaling::context::SignalingContext;
use crate::webhooks::{CallbackUri, Webhooks};
use connection::ConnectionSetup;
use dashmap::DashMap;
use media::MediaLibrary;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};
use speaker::PlayJob;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Most media operations (plays, tone sends, recognize prompts) queued or under way on one call
/// connection. Each holds its decoded audio while it waits, and each load reads up to
/// `max_media_bytes`: the cap bounds what one app can make the server hold.
pub const MAX_QUEUED_MEDIA: usize = 32;

/// Why a call automation request was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AutomationError {
    #[error("{field}: {reason}")]
    BadArgument { field: &'static str, reason: String },
    #[error("no call connection with this ID")]
    ConnectionNotFound,
    #[error("the participant is not in the call")]
    ParticipantNotInCall,
    #[error("the participant is already in the call")]
    AlreadyInCall,
    #[error("no pending invitation with this ID")]
    InvitationNotFound,
    #[error("the call connection is not connected")]
    NotConnected,
    #[error("{0}")]
    NotSupported(&'static str),
    #[error(
        "{MAX_QUEUED_MEDIA} media operations are already queued or playing on this call; wait for one to end or cancel them"
    )]
    TooManyQueued,
    #[error("the call refused: {0}")]
    Call(CallError),
    #[error("the call could not be changed: {0}")]
    Control(#[from] ControlError),
    #[error("the server's leg failed: {0}")]
    Leg(#[from] LegError),
}

impl AutomationError {
    fn bad(field: &'static str, reason: impl Into<String>) -> Self {
        AutomationError::BadArgument { field, reason: reason.into() }
    }

    /// Metrics label of the operation's result.
    pub fn label(&self) -> &'static str {
        match self {
            AutomationError::BadArgument { .. } => "bad_argument",
            AutomationError::ConnectionNotFound => "not_found",
            AutomationError::ParticipantNotInCall | AutomationError::InvitationNotFound => "participant_not_found",
            AutomationError::AlreadyInCall => "already_in_call",
            AutomationError::NotConnected => "not_connected",
            AutomationError::NotSupported(_) => "not_supported",
            AutomationError::TooManyQueued => "too_many_queued",
            AutomationError::Call(_) => "call_refused",
            AutomationError::Control(_) => "control_failed",
            AutomationError::Leg(_) => "leg_failed",
        }
    }
}

/// Limits of call automation.
#[derive(Debug, Clone, Copy)]
pub struct AutomationSettings {
    /// How long `createCall` targets ring (the calls' ring timeout).
    pub ring_timeout: Duration,
    pub max_targets: usize,
}

/// `switchboard_call_connections{state}`, `switchboard_call_automation_operations_total{operation,
/// result}`, `switchboard_call_automation_events_total{event}`.
pub struct AutomationMetrics {
    connections: IntGaugeVec,
    operations: IntCounterVec,
    pub(crate) events: IntCounterVec,
    outcomes: IntCounterVec,
}

impl AutomationMetrics {
    pub fn new(registry: &prometheus::Registry) -> Self {
        let connections = IntGaugeVec::new(
            Opts::new(
                "call_connections",
                "Live call automation connections by state (connecting, connected, disconnecting)",
            ),
            &["state"],
        )
        .expect("constant gauge options are valid");
        registry.register(Box::new(connections.clone())).expect("registered once");
        Self {
            connections,
            operations: counter_vec(
                registry,
                "call_automation_operations_total",
                "Call automation requests by operation and result",
                &["operation", "result"],
            ),
            events: counter_vec(
                registry,
                "call_automation_events_total",
                "Events call connections emitted to their apps, by event name",
                &["event"],
            ),
            outcomes: counter_vec(
                registry,
                "call_automation_outcomes_total",
                "How accepted operations ended (play, recognize, send_dtmf_tones, add_participant), by result (completed, failed, canceled)",
                &["operation", "result"],
            ),
        }
    }

    /// Count an event that ends an operation under its operation and result.
    pub(crate) fn count_event(&self, event: &str) {
        self.events.with_label_values(&[event]).inc();
        let outcome = match event {
            "PlayCompleted" => Some(("play", "completed")),
            "PlayFailed" => Some(("play", "failed")),
            "PlayCanceled" => Some(("play", "canceled")),
            "RecognizeCompleted" => Some(("recognize", "completed")),
            "RecognizeFailed" => Some(("recognize", "failed")),
            "RecognizeCanceled" => Some(("recognize", "canceled")),
            "SendDtmfTonesCompleted" => Some(("send_dtmf_tones", "completed")),
            "SendDtmfTonesFailed" => Some(("send_dtmf_tones", "failed")),
            "AddParticipantSucceeded" => Some(("add_participant", "completed")),
            "AddParticipantFailed" => Some(("add_participant", "failed")),
            "CancelAddParticipantSucceeded" => Some(("add_participant", "canceled")),
            _ => None,
        };
        if let Some((operation, result)) = outcome {
            self.outcomes.with_label_values(&[operation, result]).inc();
        }
    }

    pub(crate) fn state_changed(&self, from: Option<ConnectionState>, to: Option<ConnectionState>) {
        let gauge = |s: Option<ConnectionState>| match s {
            Some(s @ (ConnectionState::Connecting | ConnectionState::Connected | ConnectionState::Disconnecting)) => {
                Some(self.connections.with_label_values(&[s.as_str()]))
            }
            _ => None,
        };
        if let Some(g) = gauge(from) {
            g.dec();
        }
        if let Some(g) = gauge(to) {
            g.inc();
        }
    }

    fn count<T>(&self, operation: &str, result: &Result<T, AutomationError>) {
        let label = match result {
            Ok(_) => "ok",
            Err(e) => e.label(),
        };
        self.operations.with_label_values(&[operation, label]).inc();
    }
}

/// State shared by the service and its connections.
pub(crate) struct Shared {
    pub(crate) signaling: Arc<SignalingContext>,
    pub(crate) connections: DashMap<Uuid, Arc<CallConnection>>,
    pub(crate) metrics: AutomationMetrics,
    /// Where connections' events go: signed CloudEvents to each app's callback URI.
    pub(crate) webhooks: Webhooks,
    pub(crate) legs: LegConnector,
    pub(crate) settings: AutomationSettings,
    pub(crate) media: Arc<MediaLibrary>,
    /// The app's phones of `incoming_call_subscriptions`, by identity.
    pub(crate) phones: DashMap<IdentityId, tokio::sync::mpsc::Sender<incoming::PhoneCommand>>,
}

/// What `createCall` asks for.
#[derive(Debug, Clone)]
pub struct CreateCall {
    /// Raw IDs of communication users.
    pub targets: Vec<String>,
    pub callback_uri: String,
    pub operation_context: Option<String>,
    pub source_display_name: Option<String>,
}

/// What `participants:add` asks for.
#[derive(Debug, Clone)]
pub struct AddParticipant {
    pub raw_id: String,
    /// `None` (or 0): the calls' ring timeout.
    pub invitation_timeout: Option<Duration>,
    pub operation_context: Option<String>,
}

/// What `:play` asks for.
#[derive(Debug, Clone)]
pub struct Play {
    /// `FileSource.uri` of each play source, played one after the other.
    pub sources: Vec<String>,
    /// Raw IDs of `playTo`; empty: everyone.
    pub play_to: Vec<String>,
    pub looped: bool,
    pub interrupt: bool,
    pub operation_context: Option<String>,
}

/// What `:recognize` (DTMF) asks for.
#[derive(Debug, Clone)]
pub struct Recognize {
    pub target: String,
    pub options: audio::dtmf::RecognizeOptions,
    /// `playPrompt` / `playPrompts` file URIs, played before recognition starts.
    pub prompt: Vec<String>,
    pub interrupt: bool,
    /// `interruptPrompt`: a tone during the prompt stops it and counts.
    pub interrupt_prompt: bool,
    pub operation_context: Option<String>,
}

/// Where `connect` joins the leg.
#[derive(Debug, Clone)]
pub enum CallLocator {
    /// `groupCallLocator`: a group call's ID.
    Group(String),
    /// `roomCallLocator`: an ACS room's ID.
    Room(String),
}

/// The call automation service.
pub struct CallAutomation {
    shared: Arc<Shared>,
}

impl CallAutomation {
    pub fn new(
        signaling: Arc<SignalingContext>,
        legs: LegConnector,
        webhooks: Webhooks,
        settings: AutomationSettings,
        metrics: AutomationMetrics,
        media: MediaLibrary,
    ) -> Self {
        let shared = Shared {
            signaling,
            connections: DashMap::new(),
            metrics,
            webhooks,
            legs,
            settings,
            media: Arc::new(media),
            phones: DashMap::new(),
        };
        Self { shared: Arc::new(shared) }
    }

    /// A live connection.
    pub fn get(&self, id: Uuid) -> Result<Arc<CallConnection>, AutomationError> {
        self.shared.connections.get(&id).map(|c| c.clone()).ok_or(AutomationError::ConnectionNotFound)
    }

    /// Parse a communication user's raw ID of this resource.
    pub fn parse_user(&self, field: &'static str, raw: &str) -> Result<IdentityId, AutomationError> {
        IdentityId::parse_raw(raw, &self.shared.signaling.resource_id).map_err(|e| match e {
            RawIdError::ForeignResource => AutomationError::bad(field, format!("{raw} belongs to another resource")),
            _ => AutomationError::bad(field, format!("{raw} is not a communication user of this server")),
        })
    }

    /// Check a callback URI: an absolute http(s) URL whose host `[webhooks] allowed_hosts` lists.
    pub fn check_callback(&self, uri: &str) -> Result<CallbackUri, AutomationError> {
        self.shared.webhooks.validate(uri).map_err(|e| AutomationError::bad("callbackUri", e.to_string()))
    }

    /// `createCall`: the leg calls the targets; they ring like any call.
    pub async fn create_call(&self, req: CreateCall) -> Result<Arc<CallConnection>, AutomationError> {
        let result = self.create_call_inner(req).await;
        self.shared.metrics.count("create_call", &result);
        result
    }

    async fn create_call_inner(&self, req: CreateCall) -> Result<Arc<CallConnection>, AutomationError> {
        let max = self.shared.settings.max_targets;
        if req.targets.is_empty() || req.targets.len() > max {
            return Err(AutomationError::bad("targets", format!("1 to {max} targets are needed")));
        }
        for t in &req.targets {
            self.parse_user("targets", t)?;
        }
        let callback_uri = self.check_callback(&req.callback_uri)?;
        let legs = &self.shared.legs;
        let source = legs.service_identity().await?;
        let client = legs.connect(source, req.source_display_name.as_deref()).await?;
        let targets: Vec<&str> = req.targets.iter().map(String::as_str).collect();
        let joined = match client.start_call(&targets).await {
            Ok(j) => j,
            Err(e) => {
                client.close().await;
                return Err(leg_refused(e));
            }
        };
        let Some(call) = joined.call_id.as_deref().and_then(|c| Uuid::parse_str(c).ok()) else {
            client.close().await;
            return Err(LegError::Client(ClientError::Unexpected("startCall answered without a call ID".into())).into());
        };
        let setup = ConnectionSetup {
            kind: ConnectionKind::Call(call),
            callback_uri,
            operation_context: req.operation_context,
            source,
            source_raw_id: source.raw(&self.shared.signaling.resource_id),
            source_display_name: req.source_display_name,
            targets: req.targets,
            outgoing: true,
        };
        let conn = CallConnection::start(self.shared.clone(), setup, client, joined);
        tracing::info!(connection = %conn.id, %call, "call connection created");
        Ok(conn)
    }

    /// `DELETE /calling/callConnections/{id}`: the leg leaves (the call goes on if others remain).
    pub async fn hang_up(&self, id: Uuid) -> Result<(), AutomationError> {
        let result = match self.get(id) {
            Ok(conn) => {
                conn.hang_up().await;
                Ok(())
            }
            Err(e) => Err(e),
        };
        self.shared.metrics.count("hang_up", &result);
        result
    }

    /// `:terminate`: end the call for everyone.
    pub async fn terminate(&self, id: Uuid) -> Result<(), AutomationError> {
        let result = self.terminate_inner(id).await;
        self.shared.metrics.count("terminate", &result);
        result
    }

    async fn terminate_inner(&self, id: Uuid) -> Result<(), AutomationError> {
        let conn = self.get(id)?;
        let ctx = &self.shared.signaling;
        match conn.kind {
            ConnectionKind::Call(call) => match ctx.calls.end(call, EndReason::HungUp).await {
                Ok(()) | Err(CallError::NotFound) => {}
                Err(e) => return Err(AutomationError::Call(e)),
            },
            ConnectionKind::Group(_) | ConnectionKind::Room(_) => {
                if let Some(room) = ctx.rooms.get(&conn.kind.room_key()) {
                    let leg = ParticipantId(conn.leg_participant());
                    for member in room.members().into_iter().filter(|m| m.id != leg) {
                        match ctx.live.remove(&room, member.id, EndReason::HungUp).await {
                            Ok(()) | Err(ControlError::Room(crate::rooms::RoomError::ParticipantNotFound)) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
            }
        }
        conn.hang_up().await;
        Ok(())
    }
}

/// The leg's signaling refused: bad targets are the request's fault.
fn leg_refused(e: ClientError) -> AutomationError {
    match e {
        ClientError::Server { code: crate::signaling::messages::ErrorCode::BadRequest, message } => {
            AutomationError::bad("targets", message)
        }
        e => AutomationError::Leg(LegError::Client(e)),
    }
}

/// Why a callee stopped ringing, as an end reason.
fn callee_end_reason(state: CalleeState) -> EndReason {
    match state {
        CalleeState::Declined => EndReason::Declined,
        CalleeState::NoAnswer => EndReason::NoAnswer,
        CalleeState::Unreachable => EndReason::Unreachable,
        _ => EndReason::Cancelled,
    }
}
