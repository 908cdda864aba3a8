//! What happens in a room, as domain events. A room emits these to each member's `MemberSink` and
//! to its observers (the call state machine today; meetings and call-automation webhooks next);
//! each carrier turns them into its own messages (`signaling::translate` for the client
//! protocol). Nothing here knows about any wire format.

use super::role::{Role, TrackSource};
use crate::identity::IdentityId;
use crate::lean_queue;
use crate::media::ids::{ParticipantId, TrackId};
use crate::sfu::packet::{Codec, MediaKind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// One layer of a published track, as its publisher described it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Layer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bitrate: Option<u64>,
}

/// A published track as the other members see it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackView {
    pub id: TrackId,
    pub owner: ParticipantId,
    pub kind: MediaKind,
    pub codec: Codec,
    pub source: TrackSource,
    pub layers: Vec<Layer>,
    pub muted: bool,
}

/// A member as the other members see it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub participant: ParticipantId,
    pub identity: IdentityId,
    /// The identity's raw ID (`8:acs:...`).
    pub raw_id: Arc<str>,
    pub display_name: Option<Arc<str>>,
    /// The member's role in an ACS Room (`None` in group and 1:1 calls).
    pub role: Option<Role>,
    pub tracks: Vec<TrackView>,
}

/// The states of a call as its participants see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CallState {
    Connecting,
    Ringing,
    InLobby,
    Connected,
    Disconnected,
}

/// Why a participant's call ended (or an incoming call stopped ringing): the machine-readable
/// `code` of `Disconnected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum EndReason {
    /// The participant left (`leave`).
    Left,
    /// Someone hung up: this participant (`hangUp`), or the other party of a 1:1 call.
    HungUp,
    /// The connection went away without leaving.
    ConnectionLost,
    /// The callee declined.
    Declined,
    /// The caller hung up before anyone answered.
    Cancelled,
    /// Nobody answered before the ringing timeout.
    NoAnswer,
    /// No callee had a connected device.
    Unreachable,
    /// Another device of the same identity accepted.
    AnsweredElsewhere,
    /// A presenter or the Rooms API removed the participant.
    RemovedFromCall,
    /// The room was deleted.
    RoomDeleted,
    /// The identity's tokens were revoked or the identity was deleted.
    TokenRevoked,
    /// The access token expired and was not renewed.
    TokenExpired,
    /// The server is shutting down.
    ServerShutdown,
    /// The client did not read its messages fast enough.
    NotKeepingUp,
    /// A meeting's organizer or a presenter turned this person away from the lobby.
    LobbyRejected,
    /// Nobody admitted this person within the lobby timeout.
    LobbyTimeout,
    /// The session neither registered nor joined in time after connecting.
    RegisterTimeout,
}

impl EndReason {
    /// Metrics label.
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Left => "left",
            EndReason::HungUp => "hung_up",
            EndReason::ConnectionLost => "connection_lost",
            EndReason::Declined => "declined",
            EndReason::Cancelled => "cancelled",
            EndReason::NoAnswer => "no_answer",
            EndReason::Unreachable => "unreachable",
            EndReason::AnsweredElsewhere => "answered_elsewhere",
            EndReason::RemovedFromCall => "removed",
            EndReason::RoomDeleted => "room_deleted",
            EndReason::TokenRevoked => "token_revoked",
            EndReason::TokenExpired => "token_expired",
            EndReason::ServerShutdown => "server_shutdown",
            EndReason::NotKeepingUp => "not_keeping_up",
            EndReason::LobbyRejected => "rejected",
            EndReason::LobbyTimeout => "timeout",
            EndReason::RegisterTimeout => "register_timeout",
        }
    }

    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::Left => "left the call",
            EndReason::HungUp => "the call was hung up",
            EndReason::ConnectionLost => "the connection was lost",
            EndReason::Declined => "the call was declined",
            EndReason::Cancelled => "the caller hung up",
            EndReason::NoAnswer => "nobody answered",
            EndReason::Unreachable => "the callee has no connected device",
            EndReason::AnsweredElsewhere => "answered on another device",
            EndReason::RemovedFromCall => "removed from the call",
            EndReason::RoomDeleted => "the room was deleted",
            EndReason::TokenRevoked => "the access token was revoked",
            EndReason::TokenExpired => "the access token expired",
            EndReason::ServerShutdown => "the server is shutting down",
            EndReason::NotKeepingUp => "the client did not keep up with its messages",
            EndReason::LobbyRejected => "you were not admitted to the meeting",
            EndReason::LobbyTimeout => "nobody admitted you to the meeting in time",
            EndReason::RegisterTimeout => "the session did not register or join in time",
        }
    }
}

/// Why a track stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UnpublishReason {
    /// Its publisher unpublished it.
    Unpublished,
    /// Its publisher left.
    Left,
    /// Its publisher's role no longer allows its source.
    RoleChanged,
}

/// Something that happened in a room.
#[derive(Debug, Clone, PartialEq)]
pub enum RoomEvent {
    MemberJoined(MemberView),
    /// A member left; the member itself receives this too (a removal reaches its session so).
    MemberLeft {
        participant: ParticipantId,
        identity: IdentityId,
        reason: EndReason,
    },
    /// A member's role changed (its capabilities follow from it).
    RoleChanged {
        participant: ParticipantId,
        role: Role,
    },
    TrackPublished(TrackView),
    TrackUnpublished {
        track: TrackId,
        participant: ParticipantId,
        reason: UnpublishReason,
    },
    /// `by` is the moderator who muted someone else's track.
    TrackMuted {
        track: TrackId,
        participant: ParticipantId,
        muted: bool,
        by: Option<ParticipantId>,
    },
    /// Loudest first, at most five; sent when the order changes.
    ActiveSpeakers(Vec<(ParticipantId, f32)>),
    /// The call (a 1:1 call's ringing and connection) changed state; `Disconnected` ends it for
    /// every member.
    CallStateChanged {
        state: CallState,
        reason: Option<EndReason>,
    },
    /// (To members who may moderate a meeting) who waits in its lobby now.
    LobbyChanged(Vec<super::lobby::LobbyView>),
    /// (To the one admitted only) it was let in from the lobby, with this role; who is there.
    Admitted {
        participant: ParticipantId,
        role: super::role::Role,
        participants: Vec<MemberView>,
    },
}

impl RoomEvent {
    /// Events a slow member may miss without its view going wrong (the next one replaces it).
    fn is_droppable(&self) -> bool {
        matches!(self, RoomEvent::ActiveSpeakers(_) | RoomEvent::LobbyChanged(_))
    }
}

/// Where a member's events go: its session's queue. A member that lets the queue fill up on an
/// event it must not miss is flagged (`overflowed`); its session then ends, rather than going on
/// with a wrong view of the room.
#[derive(Debug, Clone)]
pub struct MemberSink {
    tx: lean_queue::Sender<Arc<RoomEvent>>,
    overflowed: CancellationToken,
}

/// Events queued for one member before it counts as not keeping up.
pub const MEMBER_QUEUE: usize = 512;

impl MemberSink {
    /// A sink and the receiving end its session reads.
    pub fn channel() -> (MemberSink, MemberEvents) {
        let (tx, rx) = lean_queue::channel(MEMBER_QUEUE);
        let overflowed = CancellationToken::new();
        (MemberSink { tx, overflowed: overflowed.clone() }, MemberEvents { rx, overflowed })
    }

    pub(super) fn deliver(&self, event: &Arc<RoomEvent>) {
        match self.tx.try_send(event.clone()) {
            Ok(()) | Err(lean_queue::TrySendError::Closed(_)) => {}
            Err(lean_queue::TrySendError::Full(_)) => {
                if !event.is_droppable() {
                    self.overflowed.cancel();
                }
            }
        }
    }
}

/// The receiving end of a member's events.
#[derive(Debug)]
pub struct MemberEvents {
    pub rx: lean_queue::Receiver<Arc<RoomEvent>>,
    /// Cancelled when the member missed an event it needed.
    pub overflowed: CancellationToken,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_sink_flags_missed_state_but_not_missed_speaker_rankings() {
        let (sink, mut events) = MemberSink::channel();
        let speakers = Arc::new(RoomEvent::ActiveSpeakers(vec![]));
        for _ in 0..MEMBER_QUEUE {
            sink.deliver(&speakers);
        }
        sink.deliver(&speakers);
        assert!(!events.overflowed.is_cancelled(), "a speaker ranking may be missed");
        let left = Arc::new(RoomEvent::MemberLeft {
            participant: ParticipantId(1),
            identity: IdentityId(uuid::Uuid::nil()),
            reason: EndReason::Left,
        });
        sink.deliver(&left);
        assert!(events.overflowed.is_cancelled(), "a missed state change is flagged");
        assert!(events.rx.try_recv().is_ok());
    }

    #[test]
    fn end_reasons_serialize_as_codes() {
        assert_eq!(serde_json::to_string(&EndReason::AnsweredElsewhere).expect("json"), "\"AnsweredElsewhere\"");
        assert_eq!(EndReason::NoAnswer.label(), "no_answer");
    }
}
