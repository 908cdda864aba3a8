//! `LiveCalls`: decisions about participants of live calls (admit, forget, change a role,
//! remove, close a room) applied to the room and to the media plane together. Every function
//! here returns only after every worker has applied the change (a `Sync` barrier), so a role
//! downgrade or a removal made through the API is in force when the API call returns.

use crate::identity::IdentityId;
use crate::media::command::Command;
use crate::media::ids::{ParticipantId, RoomId, SessionId, TrackId};
use crate::media::plane::{WorkerGone, WorkerHandle};
use crate::room_directory::AcsRoomId;
use crate::rooms::{Capabilities, Departure, EndReason, Role, Room, RoomError, RoomKey, Rooms};
use crate::sfu::packet::MediaKind;
use std::sync::Arc;

/// Why a change could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error(transparent)]
    Room(#[from] RoomError),
    #[error(transparent)]
    WorkerGone(#[from] WorkerGone),
}

/// On whose authority a participant's audio is muted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Muter {
    /// A member of the room; the room checks that it may moderate.
    Member(ParticipantId),
    /// The call automation API, through its own member of the room (the server's leg).
    Service(ParticipantId),
}

/// The live rooms and the media workers, driven together.
pub struct LiveCalls {
    pub rooms: Arc<Rooms>,
    pub workers: Vec<WorkerHandle>,
}

impl LiveCalls {
    pub fn new(rooms: Arc<Rooms>, workers: Vec<WorkerHandle>) -> Self {
        Self { rooms, workers }
    }

    /// Tell a session's worker what it may do in its room.
    pub async fn admit(
        &self,
        worker: usize,
        session: SessionId,
        room: RoomId,
        caps: Capabilities,
        version: u64,
    ) -> Result<(), WorkerGone> {
        self.workers[worker].send(Command::Admit { session, room, caps, version }).await
    }

    /// Make the media plane forget a member that left: its admission, bindings and
    /// subscriptions on its worker, and its tracks on every worker.
    pub async fn forget(&self, departure: &Departure) -> Result<(), WorkerGone> {
        self.workers[departure.worker].send(Command::Dismiss { session: departure.session }).await?;
        for track in &departure.tracks {
            self.remove_track_everywhere(*track).await?;
        }
        Ok(())
    }

    /// Drop a track on every worker (its origin and every mirror).
    pub async fn remove_track_everywhere(&self, track: TrackId) -> Result<(), WorkerGone> {
        for w in &self.workers {
            w.send(Command::RemoveTrack { track }).await?;
        }
        Ok(())
    }

    /// Wait until every worker applied everything queued so far.
    pub async fn sync_all(&self) -> Result<(), WorkerGone> {
        for w in &self.workers {
            w.sync().await?;
        }
        Ok(())
    }

    /// Give a live participant a new role: the room tells everyone, tracks the role forbids are
    /// unpublished, and the media plane enforces the new capabilities.
    pub async fn set_role(&self, room: &Room, participant: ParticipantId, role: Role) -> Result<(), ControlError> {
        let before = room.member(participant).ok_or(RoomError::ParticipantNotFound)?.caps;
        let applied = room.set_role(participant, role)?;
        self.admit(applied.worker, applied.session, room.id, applied.caps, applied.version).await?;
        for track in &applied.unpublished {
            self.remove_track_everywhere(*track).await?;
        }
        self.sync_all().await?;
        let change = match (before.publish == applied.caps.publish, before.moderate == applied.caps.moderate) {
            (true, true) => "unchanged",
            _ if applied.caps.publish.contains_all(before.publish) && applied.caps.moderate >= before.moderate => {
                "upgrade"
            }
            _ => "downgrade",
        };
        self.rooms.count_role_change(change);
        Ok(())
    }

    /// Remove a live participant: it leaves the room (its session is told why) and the media
    /// plane forgets it.
    pub async fn remove(
        &self,
        room: &Arc<Room>,
        participant: ParticipantId,
        reason: EndReason,
    ) -> Result<(), ControlError> {
        let departure = self.rooms.leave(room, participant, reason).ok_or(RoomError::ParticipantNotFound)?;
        self.forget(&departure).await?;
        self.sync_all().await?;
        self.rooms.count_role_change("removed");
        Ok(())
    }

    /// Mute every unmuted audio track of `participant`: the room tells everyone (`trackMuted` with
    /// `by`), and the track's worker stops forwarding it before this returns. Returns how many
    /// tracks were muted.
    pub async fn mute_audio(&self, room: &Room, participant: ParticipantId, by: Muter) -> Result<usize, ControlError> {
        let target = room.member(participant).ok_or(RoomError::ParticipantNotFound)?;
        let mut muted = 0;
        for track in target.tracks {
            let Some(entry) = room.track(track) else { continue };
            if entry.kind != MediaKind::Audio || entry.muted {
                continue;
            }
            let entry = match by {
                Muter::Member(actor) => room.set_muted(actor, track, true)?,
                Muter::Service(leg) => room.mute_by_service(leg, track)?,
            };
            let worker = &self.workers[entry.worker];
            worker.send(Command::SetMuted { track, muted: true }).await?;
            // In force when the caller hears back: nothing sent after it is forwarded.
            worker.sync().await?;
            muted += 1;
        }
        Ok(muted)
    }

    /// Apply changes of an ACS Room's participant list to its live call, if there is one.
    pub async fn apply_participant_changes(
        &self,
        room_id: AcsRoomId,
        changed: &[(IdentityId, Role)],
        removed: &[IdentityId],
    ) -> Result<(), ControlError> {
        let Some(room) = self.rooms.get(&RoomKey::Room(room_id)) else { return Ok(()) };
        for (identity, role) in changed {
            for member in room.members_of(*identity) {
                match self.set_role(&room, member.id, *role).await {
                    Ok(()) | Err(ControlError::Room(RoomError::ParticipantNotFound)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        for identity in removed {
            for member in room.members_of(*identity) {
                match self.remove(&room, member.id, EndReason::RemovedFromCall).await {
                    Ok(()) | Err(ControlError::Room(RoomError::ParticipantNotFound)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// End a room's live call for everyone, and turn away whoever waits in its lobby (the room or
    /// meeting was deleted).
    pub async fn close_room(&self, key: &RoomKey, reason: EndReason) -> Result<(), ControlError> {
        let Some(room) = self.rooms.get(key) else { return Ok(()) };
        self.rooms.turn_away(&room, &crate::rooms::Whom::All, reason);
        for member in room.members() {
            match self.remove(&room, member.id, reason).await {
                Ok(()) | Err(ControlError::Room(RoomError::ParticipantNotFound)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
