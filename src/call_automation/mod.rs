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

pub mod audio;
pub mod connection;
pub mod events;
pub mod incoming;
pub mod leg;
pub mod listener;
pub mod media;
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
use connection::{ConnectionSetup, LegCommand, PendingInvitation, failure_result};
use dashmap::DashMap;
use events::ResultInformation;
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

    /// `participants:add`: ring one more identity into the call. Returns the invitation ID; the
    /// outcome arrives as `AddParticipantSucceeded` / `AddParticipantFailed` (or
    /// `CancelAddParticipantSucceeded`).
    pub async fn add_participant(&self, id: Uuid, req: AddParticipant) -> Result<String, AutomationError> {
        let result = self.add_participant_inner(id, req).await;
        self.shared.metrics.count("add_participant", &result);
        result
    }

    async fn add_participant_inner(&self, id: Uuid, req: AddParticipant) -> Result<String, AutomationError> {
        let conn = self.get(id)?;
        let identity = self.parse_user("participantToAdd", &req.raw_id)?;
        let ConnectionKind::Call(call) = conn.kind else {
            return Err(AutomationError::NotSupported(
                "adding participants is supported in calls the service placed or answered",
            ));
        };
        if conn.state() != ConnectionState::Connected {
            return Err(AutomationError::NotConnected);
        }
        let ctx = &self.shared.signaling;
        if ctx.rooms.get(&conn.kind.room_key()).is_some_and(|room| !room.members_of(identity).is_empty()) {
            return Err(AutomationError::AlreadyInCall);
        }
        let ring = req.invitation_timeout.filter(|t| !t.is_zero()).unwrap_or(self.shared.settings.ring_timeout);
        let invitation = ctx.calls.invite(call, identity, ring).await.map_err(|e| match e {
            CallError::Answer(AnswerError::AlreadyRinging) => {
                AutomationError::bad("participantToAdd", "this participant is already being invited")
            }
            e => AutomationError::Call(e),
        })?;
        let invitation_id = Uuid::new_v4().to_string();
        let pending = PendingInvitation {
            identity,
            raw_id: req.raw_id,
            operation_context: req.operation_context,
            cancel_context: None,
        };
        conn.add_invitation(invitation_id.clone(), pending);
        let waiting = invitation_id.clone();
        tokio::spawn(async move {
            let outcome = invitation.await.unwrap_or(CalleeState::Stopped);
            let Some(pending) = conn.take_invitation(&waiting) else { return };
            let base = conn.event_base();
            let context = pending.operation_context.as_deref();
            let event = match (outcome, pending.cancel_context) {
                (CalleeState::Answered(_), _) => {
                    let ok = ResultInformation::new(200, 0, "The participant was added");
                    (
                        "AddParticipantSucceeded",
                        events::add_participant(&base, true, context, &pending.raw_id, &waiting, ok),
                    )
                }
                (CalleeState::Cancelled, Some(cancel_context)) => (
                    "CancelAddParticipantSucceeded",
                    events::cancel_add_participant_succeeded(&base, cancel_context.as_deref(), &waiting),
                ),
                (other, _) => {
                    let result = failure_result(callee_end_reason(other));
                    (
                        "AddParticipantFailed",
                        events::add_participant(&base, false, context, &pending.raw_id, &waiting, result),
                    )
                }
            };
            conn.emit(event.0, event.1);
        });
        Ok(invitation_id)
    }

    /// `participants:cancelAddParticipant`: stop ringing an invitation.
    pub async fn cancel_add_participant(
        &self,
        id: Uuid,
        invitation_id: &str,
        operation_context: Option<String>,
    ) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.get(id)?;
            let ConnectionKind::Call(call) = conn.kind else { return Err(AutomationError::InvitationNotFound) };
            let identity =
                conn.cancel_invitation(invitation_id, operation_context).ok_or(AutomationError::InvitationNotFound)?;
            match self.shared.signaling.calls.cancel_invite(call, identity).await {
                Ok(()) => Ok(()),
                Err(CallError::Answer(AnswerError::NotRinging | AnswerError::NotInvited) | CallError::NotFound) => {
                    Err(AutomationError::InvitationNotFound)
                }
                Err(e) => Err(AutomationError::Call(e)),
            }
        }
        .await;
        self.shared.metrics.count("cancel_add_participant", &result);
        result
    }

    /// `participants:remove`: the participant leaves the call (`RemovedFromCall`), through the
    /// removal path of the Rooms API.
    pub async fn remove_participant(
        &self,
        id: Uuid,
        raw_id: &str,
        operation_context: Option<String>,
    ) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.get(id)?;
            let identity = self.parse_user("participantToRemove", raw_id)?;
            let ctx = &self.shared.signaling;
            let room = ctx.rooms.get(&conn.kind.room_key()).ok_or(AutomationError::ParticipantNotInCall)?;
            let leg = ParticipantId(conn.leg_participant());
            let members: Vec<_> = room.members_of(identity).into_iter().filter(|m| m.id != leg).collect();
            if members.is_empty() {
                return Err(AutomationError::ParticipantNotInCall);
            }
            for member in members {
                match ctx.live.remove(&room, member.id, EndReason::RemovedFromCall).await {
                    Ok(()) | Err(ControlError::Room(crate::rooms::RoomError::ParticipantNotFound)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            let event = events::remove_participant_succeeded(&conn.event_base(), operation_context.as_deref(), raw_id);
            conn.emit("RemoveParticipantSucceeded", event);
            Ok(())
        }
        .await;
        self.shared.metrics.count("remove_participant", &result);
        result
    }

    /// `participants:mute`: mute the participants' audio server-side (the presenter mute path).
    pub async fn mute(&self, id: Uuid, raw_ids: &[String]) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.get(id)?;
            if raw_ids.is_empty() {
                return Err(AutomationError::bad("targetParticipants", "name at least one participant"));
            }
            let identities =
                raw_ids.iter().map(|r| self.parse_user("targetParticipants", r)).collect::<Result<Vec<_>, _>>()?;
            let ctx = &self.shared.signaling;
            let room = ctx.rooms.get(&conn.kind.room_key()).ok_or(AutomationError::ParticipantNotInCall)?;
            let leg = ParticipantId(conn.leg_participant());
            for identity in identities {
                let members: Vec<_> = room.members_of(identity).into_iter().filter(|m| m.id != leg).collect();
                if members.is_empty() {
                    return Err(AutomationError::ParticipantNotInCall);
                }
                for member in members {
                    ctx.live.mute_audio(&room, member.id, Muter::Service(leg)).await?;
                }
            }
            Ok(())
        }
        .await;
        self.shared.metrics.count("mute", &result);
        result
    }
}

impl CallAutomation {
    /// `:play`: queue the sources on the leg's audio track. The outcome arrives as `PlayStarted`
    /// then `PlayCompleted`, or `PlayFailed` (a missing or undecodable file), or `PlayCanceled`.
    ///
    /// `playTo` must name everyone in the call (or be empty): the leg's audio is one track that
    /// every participant may subscribe to, and the SFU has no per-subscriber audience for a
    /// track, so playing to some participants only is refused rather than heard by all.
    pub async fn play(&self, id: Uuid, req: Play) -> Result<(), AutomationError> {
        let result = self.play_inner(id, req).await;
        self.shared.metrics.count("play", &result);
        result
    }

    async fn play_inner(&self, id: Uuid, req: Play) -> Result<(), AutomationError> {
        let conn = self.get(id)?;
        if req.sources.is_empty() {
            return Err(AutomationError::bad("playSources", "name at least one play source"));
        }
        let located = req
            .sources
            .iter()
            .map(|uri| self.shared.media.locate(uri).map_err(|e| AutomationError::bad("playSources", e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if !req.play_to.is_empty() {
            let mut wanted = Vec::with_capacity(req.play_to.len());
            for raw in &req.play_to {
                self.parse_user("playTo", raw)?;
                wanted.push(raw.as_str());
            }
            let present = conn.participants();
            if let Some(missing) = wanted.iter().find(|w| !present.iter().any(|p| p.raw_id == **w)) {
                return Err(AutomationError::bad("playTo", format!("{missing} is not in the call")));
            }
            if present.iter().any(|p| !wanted.contains(&p.raw_id.as_str())) {
                return Err(AutomationError::NotSupported(
                    "playing to some of the participants only is not supported: the audio of a call connection reaches everyone in the call (omit playTo)",
                ));
            }
        }
        if conn.state() != ConnectionState::Connected {
            return Err(AutomationError::NotConnected);
        }
        let slot = conn.reserve_media()?;
        let job = self.load_in_background(located, req.looped, req.operation_context, slot);
        if !conn.command(LegCommand::Play { job, interrupt: req.interrupt }).await {
            return Err(AutomationError::NotConnected);
        }
        Ok(())
    }

    /// `:cancelAllMediaOperations`: cancel what plays, what is queued (`PlayCanceled` each).
    pub async fn cancel_media(&self, id: Uuid) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.get(id)?;
            if !conn.command(LegCommand::CancelMedia).await {
                return Err(AutomationError::NotConnected);
            }
            Ok(())
        }
        .await;
        self.shared.metrics.count("cancel_all_media_operations", &result);
        result
    }
}

impl CallAutomation {
    /// A connected connection and a participant of its call (not the leg).
    fn connected_with(
        &self,
        id: Uuid,
        field: &'static str,
        raw_id: &str,
    ) -> Result<Arc<CallConnection>, AutomationError> {
        let conn = self.get(id)?;
        self.parse_user(field, raw_id)?;
        if !conn.participants().iter().any(|p| p.raw_id == raw_id) {
            return Err(AutomationError::ParticipantNotInCall);
        }
        if conn.state() != ConnectionState::Connected {
            return Err(AutomationError::NotConnected);
        }
        Ok(conn)
    }

    /// `:startContinuousDtmfRecognition`: every tone the participant sends becomes a
    /// `ContinuousDtmfRecognitionToneReceived` event, numbered by `sequenceId`.
    pub async fn start_continuous_dtmf(
        &self,
        id: Uuid,
        target: &str,
        operation_context: Option<String>,
    ) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.connected_with(id, "targetParticipant", target)?;
            let (reply, listening) = tokio::sync::oneshot::channel();
            let command = LegCommand::StartContinuous { target: target.to_owned(), operation_context, reply };
            if !conn.command(command).await {
                return Err(AutomationError::NotConnected);
            }
            // Answer once the leg listens: tones sent after the answer are heard.
            listening.await.map_err(|_| AutomationError::NotConnected)
        }
        .await;
        self.shared.metrics.count("start_continuous_dtmf_recognition", &result);
        result
    }

    /// `:stopContinuousDtmfRecognition` (`ContinuousDtmfRecognitionStopped` when it ran).
    pub async fn stop_continuous_dtmf(
        &self,
        id: Uuid,
        target: &str,
        operation_context: Option<String>,
    ) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.get(id)?;
            self.parse_user("targetParticipant", target)?;
            let command = LegCommand::StopContinuous { target: target.to_owned(), operation_context };
            if !conn.command(command).await {
                return Err(AutomationError::NotConnected);
            }
            Ok(())
        }
        .await;
        self.shared.metrics.count("stop_continuous_dtmf_recognition", &result);
        result
    }

    /// `:recognize` (DTMF): collect the participant's tones (after the prompt, if any);
    /// `RecognizeCompleted` or `RecognizeFailed` follows.
    pub async fn recognize(&self, id: Uuid, req: Recognize) -> Result<(), AutomationError> {
        let result = self.recognize_inner(id, req).await;
        self.shared.metrics.count("recognize", &result);
        result
    }

    async fn recognize_inner(&self, id: Uuid, req: Recognize) -> Result<(), AutomationError> {
        let conn = self.connected_with(id, "targetParticipant", &req.target)?;
        let prompt = if req.prompt.is_empty() {
            None
        } else {
            let slot = conn.reserve_media()?;
            let located = req
                .prompt
                .iter()
                .map(|uri| self.shared.media.locate(uri).map_err(|e| AutomationError::bad("playPrompt", e.to_string())))
                .collect::<Result<Vec<_>, _>>()?;
            Some(self.load_in_background(located, false, req.operation_context.clone(), slot))
        };
        let (reply, replied) = tokio::sync::oneshot::channel();
        let command = LegCommand::Recognize {
            target: req.target,
            options: req.options,
            operation_context: req.operation_context,
            prompt,
            interrupt: req.interrupt,
            interrupt_prompt: req.interrupt_prompt,
            reply,
        };
        if !conn.command(command).await {
            return Err(AutomationError::NotConnected);
        }
        match replied.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AutomationError::bad("recognizeOptions.targetParticipant", e.to_string())),
            Err(_) => Err(AutomationError::NotConnected),
        }
    }

    /// `:sendDtmfTones`: RFC 4733 events on the leg's audio track, which the participant
    /// receives; `SendDtmfTonesCompleted` follows. The track reaches everyone who subscribes to
    /// it (no per-subscriber audience, as for `play`).
    pub async fn send_dtmf_tones(
        &self,
        id: Uuid,
        tones: Vec<audio::dtmf::Tone>,
        target: &str,
        operation_context: Option<String>,
    ) -> Result<(), AutomationError> {
        let result = async {
            let conn = self.connected_with(id, "targetParticipant", target)?;
            let slot = conn.reserve_media()?;
            if !conn.command(LegCommand::SendTones { tones, operation_context, slot }).await {
                return Err(AutomationError::NotConnected);
            }
            Ok(())
        }
        .await;
        self.shared.metrics.count("send_dtmf_tones", &result);
        result
    }

    /// Read and decode play sources in a task; the job's `loading` resolves when done.
    fn load_in_background(
        &self,
        located: Vec<media::Located>,
        looped: bool,
        operation_context: Option<String>,
        slot: speaker::MediaSlot,
    ) -> PlayJob {
        let (mut done, loading) = tokio::sync::oneshot::channel();
        let media = self.shared.media.clone();
        tokio::spawn(async move {
            let load_all = async {
                let mut prompts = Vec::with_capacity(located.len());
                for source in &located {
                    prompts.push(media.load(source).await?);
                }
                Ok(prompts)
            };
            // A job canceled (or its call ended) while it loads stops loading: a canceled
            // queue of long files must not keep the decoders busy.
            let loaded = tokio::select! {
                () = done.closed() => return,
                loaded = load_all => loaded,
            };
            let _ = done.send(loaded);
        });
        PlayJob { loading, looped, operation_context, slot }
    }
}

impl CallAutomation {
    /// Start the app's phones of `[call_automation] incoming_call_subscriptions`. A subscription
    /// naming no user of this server, or a callback URI the allow-list refuses, is an error.
    pub fn listen_for_incoming(
        &self,
        subscriptions: &[crate::config::IncomingCallSubscription],
    ) -> Result<(), AutomationError> {
        let mut checked = Vec::with_capacity(subscriptions.len());
        for s in subscriptions {
            let identity = self.parse_user("incoming_call_subscriptions.identity", &s.identity)?;
            let callback = self
                .shared
                .webhooks
                .validate(&s.callback_uri)
                .map_err(|e| AutomationError::bad("incoming_call_subscriptions.callback_uri", e.to_string()))?;
            checked.push(incoming::Subscription { identity, raw_id: s.identity.clone(), callback });
        }
        for sub in checked {
            incoming::spawn_phone(self.shared.clone(), sub);
        }
        Ok(())
    }

    fn incoming_context(&self, context: &str) -> Result<incoming::IncomingContext, AutomationError> {
        let parsed = incoming::IncomingContext::decode(context).ok_or_else(|| {
            AutomationError::bad("incomingCallContext", "not an incoming call context of this server")
        })?;
        if !self.shared.phones.contains_key(&parsed.callee) {
            return Err(AutomationError::bad("incomingCallContext", "no app takes the calls of this identity"));
        }
        Ok(parsed)
    }

    /// `:answer`: a leg connects as the called identity and accepts the call.
    pub async fn answer(
        &self,
        context: &str,
        callback_uri: &str,
        operation_context: Option<String>,
    ) -> Result<Arc<CallConnection>, AutomationError> {
        let result = async {
            let incoming = self.incoming_context(context)?;
            let callback_uri = self.check_callback(callback_uri)?;
            let client = self.shared.legs.connect(incoming.callee, None).await?;
            let joined = match client.accept_call(&incoming.call.to_string()).await {
                Ok(j) => j,
                Err(e) => {
                    client.close().await;
                    return Err(AutomationError::bad(
                        "incomingCallContext",
                        format!("the call cannot be answered: {e}"),
                    ));
                }
            };
            let raw = incoming.callee.raw(&self.shared.signaling.resource_id);
            let setup = ConnectionSetup {
                kind: ConnectionKind::Call(incoming.call),
                callback_uri,
                operation_context,
                source: incoming.callee,
                source_raw_id: raw,
                source_display_name: None,
                targets: Vec::new(),
                outgoing: false,
            };
            Ok(CallConnection::start(self.shared.clone(), setup, client, joined))
        }
        .await;
        self.shared.metrics.count("answer", &result);
        result
    }

    /// Decline a ringing call from the app's phone.
    async fn decline(&self, incoming: incoming::IncomingContext) -> Result<(), AutomationError> {
        let phone = self.shared.phones.get(&incoming.callee).map(|p| p.clone());
        let phone = phone.ok_or_else(|| AutomationError::bad("incomingCallContext", "no app takes these calls"))?;
        let (reply, replied) = tokio::sync::oneshot::channel();
        if phone.send(incoming::PhoneCommand::Decline { call: incoming.call, reply }).await.is_err() {
            return Err(AutomationError::NotConnected);
        }
        replied.await.map_err(|_| AutomationError::NotConnected)?
    }

    /// `:reject`: the call stops ringing for the app (the caller hears it declined).
    pub async fn reject(&self, context: &str) -> Result<(), AutomationError> {
        let result = async { self.decline(self.incoming_context(context)?).await }.await;
        self.shared.metrics.count("reject", &result);
        result
    }

    /// `:redirect`: ring `target` into the call instead, then decline for the app.
    pub async fn redirect(&self, context: &str, target: &str) -> Result<(), AutomationError> {
        let result = async {
            let incoming = self.incoming_context(context)?;
            let target = self.parse_user("target", target)?;
            let ring = self.shared.settings.ring_timeout;
            // The invitation's outcome is the call's business now; nobody waits for it.
            let _invitation = self.shared.signaling.calls.invite(incoming.call, target, ring).await.map_err(|e| {
                AutomationError::bad("incomingCallContext", format!("the call cannot be redirected: {e}"))
            })?;
            self.decline(incoming).await
        }
        .await;
        self.shared.metrics.count("redirect", &result);
        result
    }

    /// `:connect`: the leg joins a group call, or an ACS room that lists the service identity
    /// as a participant (the room's own admission decides, as for every joiner).
    pub async fn connect(
        &self,
        locator: CallLocator,
        callback_uri: &str,
        operation_context: Option<String>,
    ) -> Result<Arc<CallConnection>, AutomationError> {
        let result = async {
            let callback_uri = self.check_callback(callback_uri)?;
            let (kind, at) = match &locator {
                CallLocator::Group(g) => {
                    let id = Uuid::parse_str(g)
                        .map_err(|_| AutomationError::bad("callLocator.groupCallId", "not a group call ID (a UUID)"))?;
                    (ConnectionKind::Group(id), crate::client::Locator::Group(g.clone()))
                }
                CallLocator::Room(r) => {
                    let id = crate::room_directory::AcsRoomId::parse(r)
                        .ok_or_else(|| AutomationError::bad("callLocator.roomId", "not a room ID"))?;
                    (ConnectionKind::Room(id), crate::client::Locator::Room(r.clone()))
                }
            };
            let legs = &self.shared.legs;
            let source = legs.service_identity().await?;
            let source_raw_id = source.raw(&self.shared.signaling.resource_id);
            let client = legs.connect(source, None).await?;
            let joined = match client.join(None, at, None).await {
                Ok(j) => j,
                Err(e) => {
                    client.close().await;
                    let hint = match locator {
                        CallLocator::Room(_) => format!(
                            " (the room must list the call automation identity {source_raw_id} as a participant)"
                        ),
                        CallLocator::Group(_) => String::new(),
                    };
                    return Err(AutomationError::bad("callLocator", format!("cannot join: {e}{hint}")));
                }
            };
            let setup = ConnectionSetup {
                kind,
                callback_uri,
                operation_context,
                source,
                source_raw_id,
                source_display_name: None,
                targets: Vec::new(),
                outgoing: false,
            };
            Ok(CallConnection::start(self.shared.clone(), setup, client, joined))
        }
        .await;
        self.shared.metrics.count("connect", &result);
        result
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
