//! One live room: its members, their tracks, and the events that keep everyone's view in sync.
//! The state sits behind a mutex held only for short, non-async sections.

use super::{RoomKey, RoomKind, RoomLimits};
use crate::media::ids::{ParticipantId, RoomId, SessionId, TrackId};
use crate::sfu::packet::{Codec, MediaKind};
use crate::sfu::speakers::SpeakerRanking;
use crate::signaling::messages::{LayerRequest, ParticipantInfo, ServerMessage, Speaker, TrackInfo};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Most speakers reported in `activeSpeakers`.
const MAX_SPEAKERS: usize = 5;

/// Why a room operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    #[error("the call does not exist (a voip.join token cannot start one)")]
    NotFound,
    #[error("the room is full")]
    RoomFull,
    #[error("too many live rooms")]
    TooManyRooms,
    #[error("too many tracks for this participant")]
    TooManyTracks,
    #[error("too many publishers in this room")]
    TooManyPublishers,
    #[error("this participant may not publish")]
    NotAllowed,
    #[error("no such track")]
    TrackNotFound,
    #[error("the room has closed")]
    Closed,
}

impl RoomError {
    /// Metrics label.
    pub fn reason(&self) -> &'static str {
        match self {
            RoomError::NotFound => "call_not_found",
            RoomError::RoomFull => "room_full",
            RoomError::TooManyRooms => "too_many_rooms",
            RoomError::TooManyTracks => "too_many_tracks",
            RoomError::TooManyPublishers => "too_many_publishers",
            RoomError::NotAllowed => "not_allowed",
            RoomError::TrackNotFound => "track_not_found",
            RoomError::Closed => "closed",
        }
    }
}

/// Who is joining.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Raw ID of the joining identity.
    pub identity: String,
    pub display_name: Option<String>,
    /// May start the room if it does not exist (`voip` scope).
    pub can_create: bool,
    pub session: SessionId,
    pub worker: usize,
    pub outbox: mpsc::Sender<ServerMessage>,
}

/// A participant in a room.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: ParticipantId,
    pub identity: String,
    pub display_name: Option<String>,
    pub session: SessionId,
    pub worker: usize,
    pub outbox: mpsc::Sender<ServerMessage>,
    pub can_publish: bool,
    pub tracks: Vec<TrackId>,
}

/// A published track.
#[derive(Debug, Clone)]
pub struct TrackEntry {
    pub id: TrackId,
    pub owner: ParticipantId,
    pub kind: MediaKind,
    pub codec: Codec,
    pub layers: Vec<LayerRequest>,
    pub muted: bool,
    /// The worker of the publisher's session.
    pub worker: usize,
}

impl TrackEntry {
    pub fn info(&self) -> TrackInfo {
        TrackInfo {
            track_id: self.id.0,
            participant_id: self.owner.0,
            kind: self.kind,
            codec: self.codec,
            layers: self.layers.clone(),
            muted: self.muted,
        }
    }

    /// Height per layer (0 when unknown).
    pub fn heights(&self) -> Vec<u32> {
        if self.layers.is_empty() { vec![0] } else { self.layers.iter().map(|l| l.height.unwrap_or(0)).collect() }
    }
}

/// What a participant publishes.
#[derive(Debug, Clone)]
pub struct PublishRequest {
    pub kind: MediaKind,
    pub codec: Codec,
    pub layers: Vec<LayerRequest>,
}

#[derive(Default)]
struct RoomState {
    closed: bool,
    members: BTreeMap<ParticipantId, Member>,
    tracks: BTreeMap<TrackId, TrackEntry>,
    levels: HashMap<TrackId, f32>,
    speakers: SpeakerRanking<ParticipantId>,
}

/// One live room.
pub struct Room {
    pub id: RoomId,
    pub key: RoomKey,
    pub kind: RoomKind,
    state: Mutex<RoomState>,
}

impl Room {
    pub(super) fn new(key: RoomKey, kind: RoomKind) -> Self {
        Self { id: RoomId::next(), key, kind, state: Mutex::new(RoomState::default()) }
    }

    fn state(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding the lock is a bug elsewhere; the room data itself is still
        // consistent (every section completes its updates before it can fail), so keep going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(super) fn add_member(
        &self,
        req: JoinRequest,
        limits: RoomLimits,
    ) -> Result<(ParticipantId, Vec<ParticipantInfo>), RoomError> {
        let mut st = self.state();
        if st.closed {
            return Err(RoomError::Closed);
        }
        if st.members.len() >= limits.max_participants {
            return Err(RoomError::RoomFull);
        }
        let member = Member {
            id: ParticipantId::next(),
            identity: req.identity,
            display_name: req.display_name,
            session: req.session,
            worker: req.worker,
            outbox: req.outbox,
            can_publish: true,
            tracks: Vec::new(),
        };
        let snapshot: Vec<ParticipantInfo> = st.members.values().map(|m| participant_info(&st, m)).collect();
        let joined = ServerMessage::ParticipantJoined { participant: participant_info(&st, &member) };
        broadcast(&st, None, &joined);
        let id = member.id;
        st.members.insert(id, member);
        Ok((id, snapshot))
    }

    /// Remove a member and its tracks; returns the removed tracks and whether it was a member.
    pub(super) fn remove_member(&self, participant: ParticipantId, reason: &str) -> (Vec<TrackId>, bool) {
        let mut st = self.state();
        let Some(member) = st.members.remove(&participant) else { return (Vec::new(), false) };
        for track in &member.tracks {
            st.tracks.remove(track);
            st.levels.remove(track);
            broadcast(&st, None, &ServerMessage::TrackUnpublished { track_id: track.0, participant_id: participant.0 });
        }
        broadcast(
            &st,
            None,
            &ServerMessage::ParticipantLeft { participant_id: participant.0, reason: reason.to_owned() },
        );
        (member.tracks, true)
    }

    /// Mark the room closed if nobody is left; returns true when it was (now) closed.
    pub(super) fn close_if_empty(&self) -> bool {
        let mut st = self.state();
        if st.members.is_empty() {
            st.closed = true;
        }
        st.closed
    }

    /// Add a track published by `participant`; tells everyone else.
    pub fn publish(
        &self,
        participant: ParticipantId,
        req: PublishRequest,
        limits: RoomLimits,
    ) -> Result<TrackEntry, RoomError> {
        let mut st = self.state();
        let publishers = st.members.values().filter(|m| !m.tracks.is_empty()).count();
        let member = st.members.get(&participant).ok_or(RoomError::Closed)?;
        if !member.can_publish {
            return Err(RoomError::NotAllowed);
        }
        if member.tracks.len() >= limits.max_tracks_per_participant {
            return Err(RoomError::TooManyTracks);
        }
        if member.tracks.is_empty() && publishers >= limits.max_publishers {
            return Err(RoomError::TooManyPublishers);
        }
        let entry = TrackEntry {
            id: TrackId::next(),
            owner: participant,
            kind: req.kind,
            codec: req.codec,
            layers: req.layers,
            muted: false,
            worker: member.worker,
        };
        if let Some(m) = st.members.get_mut(&participant) {
            m.tracks.push(entry.id);
        }
        st.tracks.insert(entry.id, entry.clone());
        broadcast(&st, Some(participant), &ServerMessage::TrackPublished { track: entry.info() });
        Ok(entry)
    }

    /// Remove a track of `participant`; tells everyone else.
    pub fn unpublish(&self, participant: ParticipantId, track: TrackId) -> Result<(), RoomError> {
        let mut st = self.state();
        match st.tracks.get(&track) {
            Some(t) if t.owner == participant => {}
            _ => return Err(RoomError::TrackNotFound),
        }
        st.tracks.remove(&track);
        st.levels.remove(&track);
        if let Some(m) = st.members.get_mut(&participant) {
            m.tracks.retain(|t| *t != track);
        }
        broadcast(
            &st,
            Some(participant),
            &ServerMessage::TrackUnpublished { track_id: track.0, participant_id: participant.0 },
        );
        Ok(())
    }

    /// Mute or unmute a track of `participant`; tells everyone else.
    pub fn set_muted(&self, participant: ParticipantId, track: TrackId, muted: bool) -> Result<(), RoomError> {
        let mut st = self.state();
        match st.tracks.get_mut(&track) {
            Some(t) if t.owner == participant => t.muted = muted,
            _ => return Err(RoomError::TrackNotFound),
        }
        broadcast(
            &st,
            Some(participant),
            &ServerMessage::TrackMuted { track_id: track.0, participant_id: participant.0, muted },
        );
        Ok(())
    }

    pub fn track(&self, track: TrackId) -> Option<TrackEntry> {
        self.state().tracks.get(&track).cloned()
    }

    pub fn member(&self, participant: ParticipantId) -> Option<Member> {
        self.state().members.get(&participant).cloned()
    }

    pub fn member_count(&self) -> usize {
        self.state().members.len()
    }

    /// Take new loudness values of audio tracks; announce the speaker ranking when it changes.
    pub fn on_audio_levels(&self, levels: impl IntoIterator<Item = (TrackId, f32)>) {
        let mut st = self.state();
        for (track, level) in levels {
            if st.tracks.contains_key(&track) {
                st.levels.insert(track, level);
            }
        }
        let mut per_participant: Vec<(ParticipantId, f32)> = Vec::new();
        for (track, level) in &st.levels {
            if let Some(t) = st.tracks.get(track) {
                match per_participant.iter_mut().find(|(p, _)| *p == t.owner) {
                    Some((_, l)) => *l = l.max(*level),
                    None => per_participant.push((t.owner, *level)),
                }
            }
        }
        if let Some(ranked) = st.speakers.update(&mut per_participant, MAX_SPEAKERS) {
            let speakers = ranked.into_iter().map(|(p, level)| Speaker { participant_id: p.0, level }).collect();
            broadcast(&st, None, &ServerMessage::ActiveSpeakers { speakers });
        }
    }

    /// Send a message to every member.
    pub fn broadcast(&self, msg: &ServerMessage) {
        broadcast(&self.state(), None, msg);
    }
}

fn participant_info(st: &RoomState, m: &Member) -> ParticipantInfo {
    ParticipantInfo {
        participant_id: m.id.0,
        identity: m.identity.clone(),
        display_name: m.display_name.clone(),
        tracks: m.tracks.iter().filter_map(|t| st.tracks.get(t)).map(TrackEntry::info).collect(),
    }
}

/// Queue `msg` for every member except `except`. A member whose queue is full is too slow to
/// keep up; it misses the event (its session notices the overflow and resynchronizes or leaves).
fn broadcast(st: &RoomState, except: Option<ParticipantId>, msg: &ServerMessage) {
    for m in st.members.values() {
        if Some(m.id) != except && m.outbox.try_send(msg.clone()).is_err() {
            tracing::debug!(participant = %m.id, "participant outbox full; event dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RoomMetrics, Rooms};
    use super::*;
    use std::sync::Arc;

    fn rooms() -> Rooms {
        let limits =
            RoomLimits { max_rooms: 10, max_participants: 3, max_publishers: 2, max_tracks_per_participant: 2 };
        Rooms::new(limits, RoomMetrics::new(&prometheus::Registry::new()))
    }

    fn request(can_create: bool) -> (JoinRequest, mpsc::Receiver<ServerMessage>) {
        let (tx, rx) = mpsc::channel(16);
        let req = JoinRequest {
            identity: "8:acs:x_1".into(),
            display_name: None,
            can_create,
            session: SessionId::next(),
            worker: 0,
            outbox: tx,
        };
        (req, rx)
    }

    fn video() -> PublishRequest {
        PublishRequest { kind: MediaKind::Video, codec: Codec::Vp8, layers: vec![] }
    }

    #[test]
    fn first_joiner_creates_last_leaver_removes() {
        let rooms = rooms();
        let key = RoomKey::Group(uuid::Uuid::new_v4());
        let (join_only, _) = request(false);
        assert_eq!(rooms.join(key.clone(), join_only).err(), Some(RoomError::NotFound));
        let (a, mut a_rx) = request(true);
        let (room, pa, snapshot) = rooms.join(key.clone(), a).expect("create");
        assert!(snapshot.is_empty());
        let (b, _b_rx) = request(false);
        let (room_b, pb, snapshot) = rooms.join(key.clone(), b).expect("join existing with voip.join");
        assert!(Arc::ptr_eq(&room, &room_b));
        assert_eq!(snapshot.len(), 1);
        assert!(matches!(a_rx.try_recv(), Ok(ServerMessage::ParticipantJoined { .. })));
        rooms.leave(&room, pa, "left");
        assert!(room.member(pb).is_some());
        assert_eq!(rooms.len(), 1);
        rooms.leave(&room, pb, "left");
        assert!(rooms.is_empty());
        assert!(rooms.by_id(room.id).is_none());
        // The key is free for a new call.
        let (c, _) = request(true);
        let (room_c, _, _) = rooms.join(key, c).expect("new room");
        assert!(!Arc::ptr_eq(&room, &room_c));
    }

    #[test]
    fn limits_and_track_events() {
        let rooms = rooms();
        let key = RoomKey::Group(uuid::Uuid::new_v4());
        let mut members = Vec::new();
        for _ in 0..3 {
            let (r, rx) = request(true);
            let (room, p, _) = rooms.join(key.clone(), r).expect("join");
            members.push((room, p, rx));
        }
        let (r, _) = request(true);
        assert_eq!(rooms.join(key.clone(), r).err(), Some(RoomError::RoomFull));
        let room = members[0].0.clone();
        let (p0, p1, p2) = (members[0].1, members[1].1, members[2].1);
        let t = room.publish(p0, video(), rooms.limits()).expect("publish");
        room.publish(p0, video(), rooms.limits()).expect("second track");
        assert_eq!(room.publish(p0, video(), rooms.limits()).err(), Some(RoomError::TooManyTracks));
        room.publish(p1, video(), rooms.limits()).expect("second publisher");
        assert_eq!(room.publish(p2, video(), rooms.limits()).err(), Some(RoomError::TooManyPublishers));
        let rx2 = &mut members[2].2;
        let mut published = 0;
        while let Ok(m) = rx2.try_recv() {
            if matches!(m, ServerMessage::TrackPublished { .. }) {
                published += 1;
            }
        }
        assert_eq!(published, 3);
        assert_eq!(room.unpublish(p1, t.id).err(), Some(RoomError::TrackNotFound), "only the owner");
        room.unpublish(p0, t.id).expect("unpublish");
        assert!(matches!(members[2].2.try_recv(), Ok(ServerMessage::TrackUnpublished { .. })));
        let removed = rooms.leave(&room, p0, "left");
        assert_eq!(removed.len(), 1, "the remaining track of p0");
    }

    #[test]
    fn speaker_ranking_is_broadcast_on_change() {
        let rooms = rooms();
        let key = RoomKey::Group(uuid::Uuid::new_v4());
        let (a, mut rx) = request(true);
        let (room, p, _) = rooms.join(key, a).expect("join");
        let t = room
            .publish(p, PublishRequest { kind: MediaKind::Audio, codec: Codec::Opus, layers: vec![] }, rooms.limits())
            .expect("audio");
        room.on_audio_levels([(t.id, 80.0)]);
        let Ok(ServerMessage::ActiveSpeakers { speakers }) = rx.try_recv() else { panic!("speakers") };
        assert_eq!(speakers[0].participant_id, p.0);
        room.on_audio_levels([(t.id, 81.0)]);
        assert!(rx.try_recv().is_err(), "same ranking: no message");
    }
}
