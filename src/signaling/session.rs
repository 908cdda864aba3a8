//! `SessionHandler`: one client's signaling, whatever carries it. A session is a registered
//! device: it registers once (`register`, or the first `join` with a token), can be called while
//! in no call, joins and leaves calls, and stays connected after leaving. Requests turn into room
//! updates and worker commands; room events and device notices turn into messages for the client.
//! Everything it says to the client is queued in order and sent by the session loop
//! (`runner.rs`).
//!
//! The requests are split by concern: media (`publishing.rs`), calls and moderation
//! (`calling.rs`), room events (`translate.rs`); registration, joining and leaving are here.

use super::context::{SignalingContext, TokenBucket};
use super::messages::{
    CallState, ClientEnvelope, ClientMessage, EndReason, ErrorCode, JoinAt, ServerMessage, parse_client, readable_id,
};
use crate::auth::{Action, Scopes, TokenError, VerifiedToken};
use crate::calls::ControlError;
use crate::devices::{Device, DeviceNotice, NOTICE_QUEUE, Registration};
use crate::identity::IdentityId;
use crate::lean_queue;
use crate::media::ids::{ParticipantId, SessionId, SubscriptionId, TrackId};
use crate::media::plane::WorkerGone;
use crate::room_directory::{AcsRoomId, RoomAdmissionError};
use crate::rooms::{Capabilities, JoinRequest, MemberEvents, MemberSink, Role, Room, RoomError, RoomKey};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// Longest display name accepted (characters).
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;

/// How the session's media travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// QUIC datagrams on the session's connection (flows).
    Quic,
    /// WebRTC negotiated over the session's WebSocket.
    WebRtc,
}

/// Why the session is closed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseRequest {
    pub code: u32,
    pub reason: String,
}

/// A request's failure: the error code and message the client gets.
pub(super) type Failure = (ErrorCode, String);

/// The device registration of a session.
pub(super) struct Registered {
    pub device: Registration,
    pub raw_id: Arc<str>,
    pub generation: u32,
    pub scopes: Scopes,
    /// The token's organization standing (for meeting lobbies).
    pub org: crate::organization::OrgStatus,
    /// Unix seconds.
    pub expires_at: i64,
    pub display_name: Option<Arc<str>>,
}

impl Registered {
    pub fn identity(&self) -> IdentityId {
        self.device.identity()
    }
}

/// The call a session is in.
pub(super) struct Joined {
    pub room: Arc<Room>,
    pub participant: ParticipantId,
    pub caps: Capabilities,
    pub subscriptions: HashMap<SubscriptionId, TrackId>,
    /// The 1:1 call this room belongs to.
    pub call: Option<Uuid>,
}

/// A room to enter, and how.
pub(super) struct Entry {
    pub key: RoomKey,
    /// The role in an ACS Room.
    pub role: Option<Role>,
    /// Whether the room may be created by this join.
    pub can_create: bool,
    /// Overrides the registration's display name.
    pub display_name: Option<Arc<str>>,
    /// The state reported in `joined`.
    pub state: CallState,
    pub call: Option<Uuid>,
}

/// Where a `join` goes.
enum Locator {
    Group(Uuid),
    Room(AcsRoomId),
    Call(Uuid),
    Meeting(MeetingAt),
}

/// How a meeting is named in a `join`.
pub(super) enum MeetingAt {
    /// Its 12-digit `joinMeetingId` and the passcode given with it.
    JoinId { join_id: String, passcode: Option<String> },
    /// Its `joinWebUrl` (knowing the link is enough; no passcode).
    Link(String),
}

/// The signaling state machine of one session.
pub struct SessionHandler {
    pub(super) ctx: Arc<SignalingContext>,
    pub(super) session: SessionId,
    pub(super) worker: usize,
    pub(super) remote: SocketAddr,
    pub(super) transport: Transport,
    /// Messages for the client, in order.
    out: VecDeque<ServerMessage>,
    pub(super) registration: Option<Registered>,
    pub(super) joined: Option<Joined>,
    /// Waiting in a meeting's lobby (never at the same time as `joined`).
    pub(super) waiting: Option<super::meeting::Waiting>,
    pub(super) next_flow: u64,
    bucket: TokenBucket,
    /// Device notices (incoming calls) for this session; the sender is in the device registry.
    pub(super) notices: lean_queue::Receiver<DeviceNotice>,
    notices_tx: lean_queue::Sender<DeviceNotice>,
    /// The current room's events.
    pub(super) room_events: Option<MemberEvents>,
    close: Option<CloseRequest>,
    /// The newest server offer that is answered, rejected or withdrawn: a copy of it (or of an
    /// older one) still on its way from the worker is not passed on. Offer IDs grow across the
    /// session's calls.
    pub(super) settled_offer: u64,
}

impl SessionHandler {
    pub fn new(
        ctx: Arc<SignalingContext>,
        session: SessionId,
        worker: usize,
        remote: SocketAddr,
        transport: Transport,
    ) -> Self {
        let bucket = TokenBucket::new(ctx.messages_per_second, Instant::now());
        let (notices_tx, notices) = lean_queue::channel(NOTICE_QUEUE);
        Self {
            ctx,
            session,
            worker,
            remote,
            transport,
            out: VecDeque::new(),
            registration: None,
            joined: None,
            waiting: None,
            next_flow: 0,
            bucket,
            notices,
            notices_tx,
            room_events: None,
            close: None,
            settled_offer: 0,
        }
    }

    /// Whether the session has registered (or joined, which registers).
    pub fn is_registered(&self) -> bool {
        self.registration.is_some()
    }

    /// Queue a message for the client.
    pub fn send(&mut self, msg: ServerMessage) {
        self.out.push_back(msg);
    }

    /// The next message for the client.
    pub fn next_outgoing(&mut self) -> Option<ServerMessage> {
        let msg = self.out.pop_front();
        if self.out.is_empty() && self.out.capacity() > 0 {
            // An idle session keeps no queue (a few messages' worth is 640 bytes).
            self.out = VecDeque::new();
        }
        msg
    }

    /// Whether the session must end (and how).
    pub fn close_request(&self) -> Option<&CloseRequest> {
        self.close.as_ref()
    }

    pub fn take_close(&mut self) -> Option<CloseRequest> {
        self.close.take()
    }

    pub(super) fn count(&self, result: &str) {
        self.ctx.messages.with_label_values(&[result]).inc();
    }

    /// Handle one raw message.
    pub async fn on_frame(&mut self, bytes: &[u8]) {
        if !self.bucket.take(Instant::now()) {
            self.count("rate_limited");
            self.send(ServerMessage::error(readable_id(bytes), ErrorCode::RateLimited, "too many messages"));
            return;
        }
        let envelope = match parse_client(bytes) {
            Ok(e) => e,
            Err(e) => {
                self.count("malformed");
                let id = readable_id(bytes);
                self.send(ServerMessage::error(id, ErrorCode::BadRequest, format!("malformed message: {e}")));
                return;
            }
        };
        self.count("ok");
        let ClientEnvelope { id, message } = envelope;
        if let Err((code, message)) = self.on_message(id, message).await {
            self.send(ServerMessage::error(id, code, message));
        }
    }

    async fn on_message(&mut self, id: Option<u64>, message: ClientMessage) -> Result<(), Failure> {
        let reply = match message {
            ClientMessage::Ping {} => ServerMessage::Pong { id },
            ClientMessage::Register { token, display_name } => self.register(id, &token, display_name).await?,
            ClientMessage::Join { token, at, display_name } => {
                let locator = parse_locator(at).inspect_err(|_| {
                    self.ctx.rooms.count_join_failure("bad_request");
                })?;
                self.join(id, token.as_deref(), locator, display_name).await?
            }
            ClientMessage::StartCall { targets } => self.start_call(id, &targets).await?,
            ClientMessage::AcceptCall { call_id } => self.accept_call(id, &call_id).await?,
            ClientMessage::RejectCall { call_id } => self.reject_call(id, &call_id).await?,
            ClientMessage::Leave {} | ClientMessage::HangUp { .. } if self.waiting.is_some() => {
                self.leave(EndReason::Left).await;
                self.send(disconnected(EndReason::Left));
                ServerMessage::Ok { id }
            }
            _ if self.waiting.is_some() => {
                return Err((ErrorCode::InLobby, "waiting in the meeting's lobby to be admitted".to_owned()));
            }
            _ if self.joined.is_none() => return Err((ErrorCode::NotJoined, "join a call first".to_owned())),
            ClientMessage::AdmitLobby { participant_ids, all } => self.admit_lobby(id, participant_ids, all)?,
            ClientMessage::RejectLobby { participant_ids, all } => self.reject_lobby(id, participant_ids, all)?,
            ClientMessage::Leave {} => {
                self.leave(EndReason::Left).await;
                self.send(disconnected(EndReason::Left));
                ServerMessage::Ok { id }
            }
            ClientMessage::HangUp { for_everyone } => {
                self.hang_up(for_everyone).await?;
                self.send(disconnected(EndReason::HungUp));
                ServerMessage::Ok { id }
            }
            ClientMessage::MuteParticipant { participant_id } => self.mute_participant(id, participant_id).await?,
            ClientMessage::RemoveParticipant { participant_id } => self.remove_participant(id, participant_id).await?,
            ClientMessage::Publish { kind, codec, layers, audio_level_ext_id, source, audience } => {
                let request =
                    super::publishing::QuicPublish { kind, codec, layers, audio_level_ext_id, source, audience };
                self.publish(id, request).await?
            }
            ClientMessage::Unpublish { track_id } => self.unpublish(id, track_id).await?,
            ClientMessage::Subscribe { track_id, preferred_layer, max_height } => {
                self.subscribe(id, track_id, preferred_layer, max_height).await?
            }
            ClientMessage::Unsubscribe { subscription_id } => self.unsubscribe(id, subscription_id).await?,
            ClientMessage::SetPreferences { subscription_id, preferred_layer, max_height } => {
                self.set_preferences(id, subscription_id, preferred_layer, max_height).await?
            }
            ClientMessage::Mute { track_id, muted } => self.mute(id, track_id, muted).await?,
            ClientMessage::Offer { sdp, sources } => {
                // The answer and the tracks it published are queued by `offer` itself.
                self.offer(id, sdp, sources).await?;
                return Ok(());
            }
            ClientMessage::Answer { sdp, offer_id } => self.answer(id, sdp, offer_id).await?,
            ClientMessage::RejectOffer { offer_id, reason } => self.reject_offer(id, offer_id, reason).await?,
            ClientMessage::Candidate { .. } => ServerMessage::Ok { id },
        };
        let entered = matches!(&reply, ServerMessage::Joined { state, .. } if *state != CallState::InLobby);
        self.send(reply);
        if entered {
            self.send_current_speakers();
        }
        Ok(())
    }

    /// Tell a member who just entered a call who is speaking (`activeSpeakers` is otherwise sent
    /// only when the ranking changes).
    pub(super) fn send_current_speakers(&mut self) {
        let Some(joined) = &self.joined else { return };
        let ranked = joined.room.active_speakers();
        if !ranked.is_empty() {
            let speakers = ranked
                .iter()
                .map(|(p, level)| super::messages::Speaker { participant_id: p.0, level: *level })
                .collect();
            self.send(ServerMessage::ActiveSpeakers { speakers });
        }
    }

    /// Verify a token and register (or renew the registration of) this device.
    async fn register(
        &mut self,
        id: Option<u64>,
        token: &str,
        display_name: Option<String>,
    ) -> Result<ServerMessage, Failure> {
        let display_name = check_display_name(display_name)?;
        let verified = self.verify(token).await.map_err(|e| token_failure(&e))?;
        self.adopt(verified, display_name)?;
        let r = self.registration.as_ref().expect("adopt registered the device or failed");
        Ok(ServerMessage::Registered { id, identity: r.raw_id.to_string(), expires_on: r.expires_at })
    }

    /// Verify a token for joining, off the async threads: when the identity's revocation
    /// generation is not cached, it is read from the store, and a slow disk must stall only this
    /// session, not the runtime's threads every other session runs on.
    async fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let verifier = self.ctx.verifier.clone();
        let token = token.to_owned();
        let now = unix_now();
        tokio::task::spawn_blocking(move || verifier.verify(&token, Action::JoinCall, now))
            .await
            .unwrap_or(Err(TokenError::Store))
    }

    /// Take a verified token as this device's registration.
    fn adopt(&mut self, verified: VerifiedToken, display_name: Option<Arc<str>>) -> Result<(), Failure> {
        if let Some(r) = self.registration.as_mut() {
            if r.identity() != verified.identity {
                return Err((ErrorCode::IdentityMismatch, "this connection is registered to another identity".into()));
            }
            r.generation = r.generation.max(verified.generation);
            r.scopes = verified.scopes;
            r.org = verified.org;
            r.expires_at = verified.expires_at;
            if display_name.is_some() {
                r.display_name = display_name;
            }
            return Ok(());
        }
        let device = Device { session: self.session, notices: self.notices_tx.clone() };
        let registration = self.ctx.devices.register(verified.identity, device, verified.generation);
        // A revocation between verifying and registering is not in the registration's status.
        match self.ctx.directory.current_generation(verified.identity) {
            Ok(Some(g)) if g <= verified.generation => {}
            Ok(_) => return Err((ErrorCode::TokenRevoked, "the token has been revoked".into())),
            Err(_) => return Err((ErrorCode::ServiceUnavailable, "identity store unavailable".into())),
        }
        tracing::info!(session = %self.session, identity = %verified.identity, "device registered");
        self.registration = Some(Registered {
            device: registration,
            raw_id: verified.raw_id.into(),
            generation: verified.generation,
            scopes: verified.scopes,
            org: verified.org,
            expires_at: verified.expires_at,
            display_name,
        });
        Ok(())
    }

    /// The registration, or the error a request that needs one gets.
    pub(super) fn registered(&self) -> Result<&Registered, Failure> {
        self.registration.as_ref().ok_or((ErrorCode::NotRegistered, "register (or join with a token) first".into()))
    }

    async fn join(
        &mut self,
        id: Option<u64>,
        token: Option<&str>,
        locator: Locator,
        display_name: Option<String>,
    ) -> Result<ServerMessage, Failure> {
        self.not_in_a_call()?;
        if !self.ctx.join_limiter.allow(self.remote.ip(), Instant::now()) {
            self.ctx.rooms.count_join_failure("rate_limited");
            return Err((ErrorCode::RateLimited, "too many join attempts from this address".into()));
        }
        let display_name = check_display_name(display_name)?;
        match token {
            Some(token) => {
                let verified = self.verify(token).await.map_err(|e| {
                    self.ctx.rooms.count_join_failure(e.reason());
                    token_failure(&e)
                })?;
                self.adopt(verified, display_name.clone())?;
            }
            None if self.registration.is_none() => {
                self.ctx.rooms.count_join_failure("not_registered");
                return Err((ErrorCode::NotRegistered, "join needs a token (or a registration first)".into()));
            }
            None => {}
        }
        let r = self.registered()?;
        let identity = r.identity();
        let (key, role, can_create) = match locator {
            Locator::Group(g) => (RoomKey::Group(g), None, r.scopes.allows(Action::StartCall)),
            Locator::Room(room_id) => {
                let role = self.room_role(room_id, identity).await?;
                (RoomKey::Room(room_id), Some(role), true)
            }
            Locator::Call(call) => {
                if !self.ctx.calls.is_party(call, identity) {
                    self.ctx.rooms.count_join_failure("call_not_found");
                    return Err((ErrorCode::CallNotFound, "no such call for this identity".into()));
                }
                (RoomKey::Call(call), None, false)
            }
            Locator::Meeting(at) => return self.join_meeting(id, at, display_name).await,
        };
        let call = match key {
            RoomKey::Call(c) => Some(c),
            _ => None,
        };
        self.enter(id, Entry { key, role, can_create, display_name, state: CallState::Connected, call }).await
    }

    /// Join the room behind `key` and admit this session on its worker; the `joined` reply.
    pub(super) async fn enter(&mut self, id: Option<u64>, entry: Entry) -> Result<ServerMessage, Failure> {
        let Entry { key, role, can_create, display_name, state, call } = entry;
        let r = self.registered()?;
        let (sink, events) = MemberSink::channel();
        let request = JoinRequest {
            identity: r.identity(),
            raw_id: r.raw_id.clone(),
            display_name: display_name.or_else(|| r.display_name.clone()),
            can_create,
            role,
            session: self.session,
            worker: self.worker,
            sink,
        };
        let room_name = key.to_string();
        let (room, participant, snapshot) = self.ctx.rooms.join(key, request).map_err(|e| room_failure(&e))?;
        let caps = role.map_or(Capabilities::PARTICIPANT, Role::capabilities);
        self.joined = Some(Joined { room: room.clone(), participant, caps, subscriptions: HashMap::new(), call });
        self.room_events = Some(events);
        // Version 0: a role change racing this join (version 1 and up) wins on the worker.
        if let Err(WorkerGone) = self.ctx.live.admit(self.worker, self.session, room.id, caps, 0).await {
            self.leave(EndReason::ServerShutdown).await;
            return Err(unavailable());
        }
        tracing::info!(session = %self.session, %participant, room = %room_name, "joined");
        Ok(ServerMessage::Joined {
            id,
            participant_id: participant.0,
            room: room_name,
            state,
            call_id: call.map(|c| c.to_string()),
            meeting_id: None,
            role,
            capabilities: caps.into(),
            participants: snapshot.iter().map(Into::into).collect(),
        })
    }

    /// The role `identity` has in the ACS Room `room_id`, if it may join now (the join refusal
    /// is counted by reason).
    async fn room_role(&self, room_id: AcsRoomId, identity: IdentityId) -> Result<Role, Failure> {
        let directory = self.ctx.room_directory.clone();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let result = tokio::task::spawn_blocking(move || directory.admission(&room_id.to_string(), identity, now_ms))
            .await
            .map_err(|_| (ErrorCode::InternalError, "the room lookup failed".to_owned()))?;
        result.map_err(|e| {
            self.ctx.rooms.count_join_failure(e.reason());
            let code = match e {
                RoomAdmissionError::RoomNotFound => ErrorCode::RoomNotFound,
                RoomAdmissionError::NotAParticipant => ErrorCode::NotAParticipant,
                RoomAdmissionError::NotYetValid | RoomAdmissionError::Expired => ErrorCode::RoomNotValidNow,
                RoomAdmissionError::Store(_) => ErrorCode::ServiceUnavailable,
            };
            (code, e.to_string())
        })
    }

    /// Leave the call (if in one) or a meeting's lobby: tell the others, and make the media plane
    /// forget this session's bindings, subscriptions and tracks. The device stays registered.
    pub async fn leave(&mut self, reason: EndReason) {
        self.room_events = None;
        let (room, participant) = match (self.joined.take(), self.waiting.take()) {
            (Some(j), _) => (j.room, j.participant),
            (None, Some(w)) => (w.room, w.participant),
            (None, None) => return,
        };
        if let Some(departure) = self.ctx.rooms.leave(&room, participant, reason) {
            // A stopped worker has nothing left to forget.
            let _ = self.ctx.live.forget(&departure).await;
        }
    }

    /// Refuse a request that needs this session to be in no call and no lobby.
    pub(super) fn not_in_a_call(&self) -> Result<(), Failure> {
        if self.joined.is_some() || self.waiting.is_some() {
            return Err((ErrorCode::AlreadyJoined, "this session is in a call (or a lobby); leave it first".into()));
        }
        Ok(())
    }

    /// End the session: leave the call, tell the client why, and close the connection.
    pub async fn end_session(&mut self, reason: EndReason, code: u32) {
        self.leave(reason).await;
        self.send(disconnected(reason));
        self.close = Some(CloseRequest { code, reason: reason.describe().to_owned() });
    }

    /// The registration's token status changed: end the session if its token is no longer good.
    pub async fn check_revocation(&mut self) {
        let Some(r) = self.registration.as_mut() else { return };
        let status = *r.device.status.borrow_and_update();
        if status.revokes(r.generation) {
            self.end_session(EndReason::TokenRevoked, crate::media::quic::close_code::TOKEN_REVOKED).await;
        }
    }

    /// When the registration's token expires (with the verifier's leeway).
    pub fn token_deadline(&self) -> Option<tokio::time::Instant> {
        let r = self.registration.as_ref()?;
        let left = r.expires_at.saturating_add(self.ctx.verifier.leeway_secs()).saturating_sub(unix_now());
        Some(tokio::time::Instant::now() + std::time::Duration::from_secs(u64::try_from(left).unwrap_or(0)))
    }

    /// Whether the call this session is in has this subscription.
    pub fn has_subscription(&self, subscription: SubscriptionId) -> bool {
        self.joined.as_ref().is_some_and(|j| j.subscriptions.contains_key(&subscription))
    }
}

fn parse_locator(at: JoinAt) -> Result<Locator, Failure> {
    let uuid = |v: &str, field: &str| {
        Uuid::parse_str(v).map_err(|_| (ErrorCode::BadRequest, format!("{field} must be a UUID")))
    };
    let JoinAt { group_id, room_id, call_id, meeting_id, passcode, meeting_link } = at;
    match (group_id, room_id, call_id, meeting_id, meeting_link) {
        (Some(g), None, None, None, None) => Ok(Locator::Group(uuid(&g, "groupId")?)),
        (None, Some(r), None, None, None) => AcsRoomId::parse(&r)
            .map(Locator::Room)
            .ok_or((ErrorCode::RoomNotFound, "roomId is not the ID of a room".into())),
        (None, None, Some(c), None, None) => Ok(Locator::Call(uuid(&c, "callId")?)),
        (None, None, None, Some(m), None) if m.len() <= 64 && passcode.as_ref().is_none_or(|p| p.len() <= 64) => {
            Ok(Locator::Meeting(MeetingAt::JoinId { join_id: m, passcode }))
        }
        (None, None, None, None, Some(link)) if link.len() <= 2048 => Ok(Locator::Meeting(MeetingAt::Link(link))),
        _ => Err((
            ErrorCode::BadRequest,
            "join needs exactly one locator: groupId, roomId, callId, meetingId (with passcode) or meetingLink".into(),
        )),
    }
}

fn check_display_name(name: Option<String>) -> Result<Option<Arc<str>>, Failure> {
    match name {
        Some(n) if n.chars().count() > MAX_DISPLAY_NAME_CHARS => {
            Err((ErrorCode::BadRequest, format!("displayName must be at most {MAX_DISPLAY_NAME_CHARS} characters")))
        }
        Some(n) if n.trim().is_empty() => Ok(None),
        Some(n) => Ok(Some(n.trim().into())),
        None => Ok(None),
    }
}

/// `callStateChanged` to `Disconnected` for `reason`.
pub(super) fn disconnected(reason: EndReason) -> ServerMessage {
    ServerMessage::CallStateChanged {
        state: CallState::Disconnected,
        code: Some(reason),
        reason: Some(reason.describe().to_owned()),
    }
}

pub(super) fn token_failure(e: &TokenError) -> Failure {
    (ErrorCode::from_token_error(e), e.to_string())
}

pub(super) fn unavailable() -> Failure {
    (ErrorCode::ServiceUnavailable, "the media plane is stopping".to_owned())
}

pub(super) fn room_failure(e: &RoomError) -> Failure {
    let code = match e {
        RoomError::NotFound => ErrorCode::CallNotFound,
        RoomError::RoomFull => ErrorCode::RoomFull,
        RoomError::TooManyRooms | RoomError::TooManyTracks | RoomError::TooManyPublishers => ErrorCode::LimitExceeded,
        RoomError::NotAllowed => ErrorCode::NotAllowed,
        RoomError::TrackNotFound => ErrorCode::TrackNotFound,
        RoomError::ParticipantNotFound => ErrorCode::ParticipantNotFound,
        RoomError::Ended => ErrorCode::CallEnded,
        RoomError::Closed => ErrorCode::ServiceUnavailable,
    };
    (code, e.to_string())
}

pub(super) fn control_failure(e: &ControlError) -> Failure {
    match e {
        ControlError::Room(e) => room_failure(e),
        ControlError::WorkerGone(_) => unavailable(),
    }
}

pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
