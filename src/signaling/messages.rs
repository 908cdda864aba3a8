//! The signaling protocol: JSON messages with a `type` field, the same on every carrier (a
//! length-prefixed QUIC stream, a WebSocket). Requests may carry an `id`; the response to a
//! request echoes it. `docs/PROTOCOL.md` documents each message with an example.

pub use crate::rooms::{CallState, EndReason, Layer as LayerRequest, Role, TrackSource, UnpublishReason};
use crate::rooms::{Capabilities, MemberView, TrackView};
use crate::sfu::packet::{Codec, MediaKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A client request with its optional correlation ID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientEnvelope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(flatten)]
    pub message: ClientMessage,
}

/// Messages from clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ClientMessage {
    /// Register this connection as a device of the token's identity: it can then be called,
    /// start calls and join without sending the token again. Sent again with a fresh token, it
    /// renews the registration (same identity only).
    Register {
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
    },
    /// Join a call. Exactly one locator (`groupId`, `roomId`, `callId`, `meetingId` with
    /// `passcode`, or `meetingLink`) must be given. Without a registration the `token` is required
    /// (and registers the device).
    Join {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
        #[serde(flatten)]
        at: JoinAt,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
    },
    /// Call one identity (or a few: a small group ring). Needs a registration with `voip`.
    StartCall {
        /// Raw IDs of the callees (`8:acs:...`).
        targets: Vec<String>,
    },
    /// Answer an incoming call on this device.
    AcceptCall {
        call_id: String,
    },
    /// Decline an incoming call (for every device of this identity).
    RejectCall {
        call_id: String,
    },
    /// Leave the call; `forEveryone` ends a 1:1 call for all (a presenter may end a room's call).
    HangUp {
        #[serde(default)]
        for_everyone: bool,
    },
    /// Moderation (presenters): mute another participant's audio.
    MuteParticipant {
        participant_id: u64,
    },
    /// Moderation (presenters): remove another participant from the call.
    RemoveParticipant {
        participant_id: u64,
    },
    /// Meetings (organizer and presenters): let people in from the lobby: those named, or `all`.
    AdmitLobby {
        #[serde(default)]
        participant_ids: Vec<u64>,
        #[serde(default)]
        all: bool,
    },
    /// Meetings (organizer and presenters): turn people away from the lobby.
    RejectLobby {
        #[serde(default)]
        participant_ids: Vec<u64>,
        #[serde(default)]
        all: bool,
    },
    /// Start sending a track. Simulcast video lists its layers lowest first.
    Publish {
        kind: MediaKind,
        codec: Codec,
        #[serde(default)]
        layers: Vec<LayerRequest>,
        /// Header extension ID of the RFC 6464 audio level (QUIC; default 1).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audio_level_ext_id: Option<u8>,
        /// `microphone`, `camera` or `screen` (default: microphone for audio, camera for video).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<TrackSource>,
        /// Publish to these identities (raw IDs) only: only their devices learn of the track and
        /// may subscribe to it. Absent: to everyone in the call.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        audience: Option<Vec<String>>,
    },
    Unpublish {
        track_id: u64,
    },
    Subscribe {
        track_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preferred_layer: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_height: Option<u32>,
    },
    Unsubscribe {
        subscription_id: u64,
    },
    /// Change the preferred layer / maximum height of a subscription.
    SetPreferences {
        subscription_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        preferred_layer: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_height: Option<u32>,
    },
    Mute {
        track_id: u64,
        muted: bool,
    },
    Leave {},
    Ping {},
    /// WebRTC (WebSocket carrier): the client's SDP offer. Its send-only media become published
    /// tracks; the server answers with `answer` and one `published` per new track.
    Offer {
        sdp: String,
        /// What sending media lines carry, by mid (`screen` for a screen share); default from
        /// the line's kind.
        #[serde(default, skip_serializing_if = "HashMap::is_empty")]
        sources: HashMap<String, TrackSource>,
    },
    /// WebRTC: the client's answer to a server `offer` (sent when subscriptions change).
    Answer {
        sdp: String,
        /// The `offerId` of the offer it answers; an answer to an offer that is no longer
        /// outstanding is refused. Optional: without it, the answer is for the outstanding offer.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offer_id: Option<u64>,
    },
    /// WebRTC: the client could not apply server offer `offerId` (its `setRemoteDescription`
    /// failed). The server withdraws it and offers its changes again after a back-off.
    RejectOffer {
        offer_id: u64,
        /// Why, for the server's log (at most 256 bytes are kept).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// WebRTC: a trickled ICE candidate. The server is ICE-lite and learns the client's address
    /// from its connectivity checks, so candidates are accepted and not needed.
    Candidate {
        #[serde(default)]
        candidate: String,
    },
}

/// Where a `join` goes: exactly one of the locators.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinAt {
    /// A group call (any UUID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// An ACS Room (from `POST /rooms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// A 1:1 call this identity is a party of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// A meeting's 12-digit `joinMeetingId`, with its `passcode` (when it has one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passcode: Option<String>,
    /// A meeting's `joinWebUrl` (no passcode needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_link: Option<String>,
}

impl JoinAt {
    pub fn group(id: &str) -> Self {
        Self { group_id: Some(id.to_owned()), ..Self::default() }
    }

    pub fn room(id: &str) -> Self {
        Self { room_id: Some(id.to_owned()), ..Self::default() }
    }

    pub fn call(id: &str) -> Self {
        Self { call_id: Some(id.to_owned()), ..Self::default() }
    }

    pub fn meeting(join_meeting_id: &str, passcode: Option<&str>) -> Self {
        Self { meeting_id: Some(join_meeting_id.to_owned()), passcode: passcode.map(str::to_owned), ..Self::default() }
    }

    pub fn meeting_link(link: &str) -> Self {
        Self { meeting_link: Some(link.to_owned()), ..Self::default() }
    }
}

/// Messages from the server. Responses carry the request's `id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum ServerMessage {
    Registered {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// The identity's raw ID.
        identity: String,
        /// When the token expires (unix seconds); register again with a fresh token before.
        expires_on: i64,
    },
    Joined {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        participant_id: u64,
        room: String,
        state: CallState,
        /// A 1:1 call's ID (`startCall`, `acceptCall`, or a join by `callId`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<String>,
        /// A meeting's 12-digit join meeting ID (a join by `meetingId` or `meetingLink`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        meeting_id: Option<String>,
        /// The role in an ACS Room or a meeting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<Role>,
        capabilities: CapabilitiesInfo,
        participants: Vec<ParticipantInfo>,
    },
    /// Let in from a meeting's lobby: the role, what it may do, and who is there.
    Admitted {
        participant_id: u64,
        role: Role,
        capabilities: CapabilitiesInfo,
        participants: Vec<ParticipantInfo>,
    },
    /// (Organizer and presenters of a meeting) who waits in the lobby now, oldest first.
    LobbyUpdated {
        participants: Vec<LobbyParticipantInfo>,
    },
    /// A call rings on this device.
    IncomingCall {
        call_id: String,
        caller: CallerInfo,
        /// Set when the call is an invitation into a group call: accepting joins that group.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group_id: Option<String>,
    },
    /// A call stopped ringing on this device (`AnsweredElsewhere`, `Declined`, `Cancelled`,
    /// `NoAnswer`).
    IncomingCallEnded {
        call_id: String,
        code: EndReason,
        reason: String,
    },
    /// A participant's role changed; `capabilities` when it is this participant's own.
    RoleChanged {
        participant_id: u64,
        role: Role,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        capabilities: Option<CapabilitiesInfo>,
    },
    Published {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        track_id: u64,
        /// QUIC: the RoQ flow ID for each layer, lowest first.
        #[serde(default)]
        flows: Vec<LayerFlow>,
        /// WebRTC: the media line of the track.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mid: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<MediaKind>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        codec: Option<Codec>,
    },
    Subscribed {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        subscription_id: u64,
        track_id: u64,
        kind: MediaKind,
        codec: Codec,
        /// QUIC: the RoQ flow ID the media arrives on.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        flow_id: Option<u64>,
        /// QUIC: the SSRC the subscriber sees (fixed for the subscription).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ssrc: Option<u32>,
        /// WebRTC: the media stream ID the track arrives with (after the server's next `offer`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<String>,
    },
    /// WebRTC: the server's answer to the client's offer.
    Answer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        sdp: String,
    },
    /// WebRTC: a server offer (subscriptions changed); the client replies with `answer` (or
    /// `rejectOffer`) naming its `offerId`. An offer not answered in time is sent again, with the
    /// same `offerId` and SDP.
    Offer {
        sdp: String,
        offer_id: u64,
    },
    /// Generic success for requests without a specific answer.
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    Pong {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
    ParticipantJoined {
        participant: ParticipantInfo,
    },
    ParticipantLeft {
        participant_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<EndReason>,
        reason: String,
    },
    TrackPublished {
        track: TrackInfo,
    },
    TrackUnpublished {
        track_id: u64,
        participant_id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<UnpublishReason>,
    },
    TrackMuted {
        track_id: u64,
        participant_id: u64,
        muted: bool,
        /// The presenter who muted it (absent when the owner did).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<u64>,
    },
    /// The layer forwarded on a subscription changed.
    LayerChanged {
        subscription_id: u64,
        layer: u8,
    },
    ActiveSpeakers {
        speakers: Vec<Speaker>,
    },
    CallStateChanged {
        state: CallState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<EndReason>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        code: ErrorCode,
        message: String,
    },
}

/// The RoQ flow of one published layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerFlow {
    pub layer: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    pub flow_id: u64,
}

/// A participant as other participants see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    pub participant_id: u64,
    /// The identity's raw ID.
    pub identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The role in an ACS Room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    pub tracks: Vec<TrackInfo>,
}

impl From<&MemberView> for ParticipantInfo {
    fn from(m: &MemberView) -> Self {
        Self {
            participant_id: m.participant.0,
            identity: m.raw_id.to_string(),
            display_name: m.display_name.as_deref().map(str::to_owned),
            role: m.role,
            tracks: m.tracks.iter().map(TrackInfo::from).collect(),
        }
    }
}

/// A published track as subscribers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackInfo {
    pub track_id: u64,
    pub participant_id: u64,
    pub kind: MediaKind,
    pub codec: Codec,
    #[serde(default)]
    pub source: TrackSource,
    pub layers: Vec<LayerRequest>,
    pub muted: bool,
}

impl From<&TrackView> for TrackInfo {
    fn from(t: &TrackView) -> Self {
        Self {
            track_id: t.id.0,
            participant_id: t.owner.0,
            kind: t.kind,
            codec: t.codec,
            source: t.source,
            layers: t.layers.clone(),
            muted: t.muted,
        }
    }
}

/// Someone waiting in a meeting's lobby.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LobbyParticipantInfo {
    pub participant_id: u64,
    /// The identity's raw ID.
    pub identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Unix milliseconds.
    pub waiting_since: i64,
}

impl From<&crate::rooms::LobbyView> for LobbyParticipantInfo {
    fn from(v: &crate::rooms::LobbyView) -> Self {
        Self {
            participant_id: v.participant.0,
            identity: v.raw_id.to_string(),
            display_name: v.display_name.as_deref().map(str::to_owned),
            waiting_since: v.waiting_since_ms,
        }
    }
}

/// What this participant may do (from its role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapabilitiesInfo {
    /// Sources it may publish.
    pub publish: Vec<TrackSource>,
    /// Whether it receives media.
    pub receive: bool,
    /// Whether it may mute or remove others.
    pub moderate: bool,
}

impl From<Capabilities> for CapabilitiesInfo {
    fn from(c: Capabilities) -> Self {
        Self { publish: c.publish.names(), receive: c.receive, moderate: c.moderate }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallerInfo {
    /// The caller's raw ID.
    pub identity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// One active speaker, loudest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Speaker {
    pub participant_id: u64,
    /// Smoothed loudness, 0 (silent) to 127.
    pub level: f32,
}

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    TokenInvalid,
    TokenExpired,
    TokenRevoked,
    TokenScopeInsufficient,
    BadRequest,
    /// The request needs a registration (`register`, or a `join` with a token) first.
    NotRegistered,
    /// `register` with a token of another identity than the one registered.
    IdentityMismatch,
    NotJoined,
    AlreadyJoined,
    CallNotFound,
    /// The call ended before the request (e.g. accepting after the caller hung up).
    CallEnded,
    /// Another device of this identity answered first.
    AnsweredElsewhere,
    /// The identity is not a participant of the room.
    NotAParticipant,
    /// The room is not valid now (before `validFrom` or after `validUntil`).
    RoomNotValidNow,
    RoomNotFound,
    ParticipantNotFound,
    /// No meeting has that `meetingId` or `meetingLink`.
    MeetingNotFound,
    /// The meeting's passcode does not match.
    WrongPasscode,
    /// The request is not possible while waiting in a meeting's lobby.
    InLobby,
    RoomFull,
    LimitExceeded,
    TrackNotFound,
    SubscriptionNotFound,
    NotAllowed,
    RateLimited,
    MessageTooLarge,
    ServerShutdown,
    ServiceUnavailable,
    InternalError,
}

impl ErrorCode {
    /// Map a token failure to the code a client sees.
    pub fn from_token_error(e: &crate::auth::TokenError) -> Self {
        match e.code() {
            "TokenExpired" => ErrorCode::TokenExpired,
            "TokenRevoked" => ErrorCode::TokenRevoked,
            "TokenScopeInsufficient" => ErrorCode::TokenScopeInsufficient,
            "ServiceUnavailable" => ErrorCode::ServiceUnavailable,
            _ => ErrorCode::TokenInvalid,
        }
    }
}

/// Why a frame could not be turned into a `ClientEnvelope`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MalformedMessage(pub String);

/// Parse one message.
pub fn parse_client(bytes: &[u8]) -> Result<ClientEnvelope, MalformedMessage> {
    serde_json::from_slice(bytes).map_err(|e| MalformedMessage(e.to_string()))
}

/// The numeric `id` of a message that was refused before it was understood (unknown type, a
/// missing or wrongly typed field, rate limited), when the message is a JSON object with one, so
/// the error still answers the request that carried it.
pub fn readable_id(bytes: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct IdOnly {
        #[serde(default)]
        id: Option<serde_json::Value>,
    }
    serde_json::from_slice::<IdOnly>(bytes).ok()?.id?.as_u64()
}

impl ServerMessage {
    /// The request `id` this message answers, if it is a response.
    pub fn response_id(&self) -> Option<u64> {
        match self {
            ServerMessage::Joined { id, .. }
            | ServerMessage::Registered { id, .. }
            | ServerMessage::Published { id, .. }
            | ServerMessage::Subscribed { id, .. }
            | ServerMessage::Answer { id, .. }
            | ServerMessage::Ok { id }
            | ServerMessage::Pong { id }
            | ServerMessage::Error { id, .. } => *id,
            _ => None,
        }
    }

    pub fn error(id: Option<u64>, code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMessage::Error { id, code, message: message.into() }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages contain only serializable values")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_with_ids() {
        let m = parse_client(br#"{"type":"join","id":1,"token":"t","groupId":"g"}"#).expect("valid");
        assert_eq!(m.id, Some(1));
        assert_eq!(
            m.message,
            ClientMessage::Join { token: Some("t".into()), at: JoinAt::group("g"), display_name: None }
        );
        let m = parse_client(br#"{"type":"join","id":2,"meetingId":"123456789012","passcode":"Xy7"}"#).expect("valid");
        assert_eq!(
            m.message,
            ClientMessage::Join { token: None, at: JoinAt::meeting("123456789012", Some("Xy7")), display_name: None }
        );
        let back = serde_json::to_string(&ClientEnvelope { id: Some(2), message: m.message.clone() }).expect("json");
        assert_eq!(parse_client(back.as_bytes()).expect("valid").message, m.message, "round trip");
        let m = parse_client(br#"{"type":"admitLobby","all":true}"#).expect("valid");
        assert_eq!(m.message, ClientMessage::AdmitLobby { participant_ids: vec![], all: true });
        let m = parse_client(br#"{"type":"startCall","id":2,"targets":["8:acs:r_1"]}"#).expect("valid");
        assert_eq!(m.message, ClientMessage::StartCall { targets: vec!["8:acs:r_1".into()] });
        let m = parse_client(br#"{"type":"hangUp"}"#).expect("valid");
        assert_eq!(m.message, ClientMessage::HangUp { for_everyone: false });
        let m = parse_client(br#"{"type":"offer","sdp":"v=0","sources":{"2":"screen"}}"#).expect("valid");
        let ClientMessage::Offer { sources, .. } = m.message else { panic!("offer") };
        assert_eq!(sources.get("2"), Some(&TrackSource::Screen));
        let m = parse_client(br#"{"type":"publish","kind":"video","codec":"VP8","layers":[{"rid":"q","height":180}]}"#)
            .expect("valid");
        assert!(matches!(m.message, ClientMessage::Publish { kind: MediaKind::Video, codec: Codec::Vp8, .. }));
        let m = parse_client(br#"{"type":"leave"}"#).expect("valid");
        assert_eq!(m.message, ClientMessage::Leave {});
    }

    #[test]
    fn both_directions_round_trip() {
        let req = ClientEnvelope { id: Some(3), message: ClientMessage::Mute { track_id: 1, muted: true } };
        let text = serde_json::to_string(&req).expect("json");
        assert_eq!(parse_client(text.as_bytes()).expect("valid").message, req.message);
        let resp = ServerMessage::LayerChanged { subscription_id: 2, layer: 1 };
        let back: ServerMessage = serde_json::from_str(&resp.to_json()).expect("json");
        assert_eq!(back, resp);
    }

    #[test]
    fn refuses_garbage_with_a_message() {
        for bad in [&b"{"[..], b"[]", br#"{"type":"fly"}"#, br#"{"type":"subscribe"}"#, b"\xff\xfe", b""] {
            assert!(parse_client(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn serializes_server_messages_with_type_tags() {
        let m = ServerMessage::Subscribed {
            id: Some(4),
            subscription_id: 9,
            track_id: 3,
            kind: MediaKind::Video,
            codec: Codec::Vp8,
            flow_id: Some(12),
            ssrc: Some(77),
            stream_id: None,
        };
        let v: serde_json::Value = serde_json::from_str(&m.to_json()).expect("json");
        assert_eq!(v["type"], "subscribed");
        assert_eq!(v["subscriptionId"], 9);
        assert_eq!(v["codec"], "VP8");
        let e = ServerMessage::error(None, ErrorCode::TokenRevoked, "revoked");
        let v: serde_json::Value = serde_json::from_str(&e.to_json()).expect("json");
        assert_eq!(v["code"], "TokenRevoked");
        assert!(v.get("id").is_none());
    }
}
