//! Room events, as this session's client sees them: the domain events of `rooms` become protocol
//! messages, and the session keeps its own view (role, subscriptions, membership) in step. Events
//! about the member itself are where a removal, a role change or the end of a call reach it.

use super::messages::{CallState, ParticipantInfo, ServerMessage, Speaker, TrackInfo, UnpublishReason};
use super::session::{SessionHandler, disconnected};
use crate::rooms::RoomEvent;
use std::sync::Arc;

impl SessionHandler {
    /// One event of the room this session is in.
    pub async fn on_room_event(&mut self, event: Arc<RoomEvent>) {
        if self.joined.is_none() {
            // Waiting in a meeting's lobby: only its own lobby state reaches it.
            self.on_lobby_event(&event).await;
            return;
        }
        let Some(j) = self.joined.as_mut() else { return };
        let me = j.participant;
        let msg = match &*event {
            RoomEvent::MemberJoined(m) if m.participant != me => {
                ServerMessage::ParticipantJoined { participant: ParticipantInfo::from(m) }
            }
            RoomEvent::MemberJoined(_) => return,
            RoomEvent::MemberLeft { participant, reason, .. } if *participant == me => {
                // Removed by someone else: the room and the media plane already let go of us;
                // dismissing again also undoes this join's admission if it arrived late.
                self.joined = None;
                self.room_events = None;
                let dismiss = crate::media::command::Command::Dismiss { session: self.session };
                let _ = self.ctx.workers[self.worker].send(dismiss).await;
                disconnected(*reason)
            }
            RoomEvent::MemberLeft { participant, reason, .. } => ServerMessage::ParticipantLeft {
                participant_id: participant.0,
                code: Some(*reason),
                reason: reason.label().to_owned(),
            },
            RoomEvent::RoleChanged { participant, role } => {
                let own = *participant == me;
                if own {
                    j.caps = role.capabilities();
                }
                ServerMessage::RoleChanged {
                    participant_id: participant.0,
                    role: *role,
                    capabilities: own.then(|| j.caps.into()),
                }
            }
            RoomEvent::TrackPublished(t) if t.owner != me => {
                ServerMessage::TrackPublished { track: TrackInfo::from(t) }
            }
            RoomEvent::TrackPublished(_) => return,
            RoomEvent::TrackUnpublished { track, participant, reason } => {
                j.subscriptions.retain(|_, t| t != track);
                // The owner learned of its own unpublish from its request's answer.
                if *participant == me && *reason == UnpublishReason::Unpublished {
                    return;
                }
                ServerMessage::TrackUnpublished {
                    track_id: track.0,
                    participant_id: participant.0,
                    reason: Some(*reason),
                }
            }
            RoomEvent::TrackMuted { track, participant, muted, by } => {
                if *participant == me && by.is_none() {
                    return;
                }
                ServerMessage::TrackMuted {
                    track_id: track.0,
                    participant_id: participant.0,
                    muted: *muted,
                    by: by.map(|p| p.0),
                }
            }
            RoomEvent::ActiveSpeakers(ranked) => ServerMessage::ActiveSpeakers {
                speakers: ranked.iter().map(|(p, level)| Speaker { participant_id: p.0, level: *level }).collect(),
            },
            RoomEvent::CallStateChanged { state: CallState::Disconnected, reason } => {
                let reason = reason.unwrap_or(super::messages::EndReason::HungUp);
                self.leave(reason).await;
                disconnected(reason)
            }
            RoomEvent::CallStateChanged { state, .. } => {
                ServerMessage::CallStateChanged { state: *state, code: None, reason: None }
            }
            RoomEvent::LobbyChanged(waiting) => {
                ServerMessage::LobbyUpdated { participants: waiting.iter().map(Into::into).collect() }
            }
            // Only ever delivered to someone waiting (handled above).
            RoomEvent::Admitted { .. } => return,
        };
        self.send(msg);
    }
}
