//! One live room: its members, their roles and tracks, and the domain events that keep everyone's
//! view in sync. The state sits behind a mutex held only for short, non-async sections; events are
//! queued to members and observers while it is held, so every member sees them in one order.

use super::events::{EndReason, Layer, MemberSink, MemberView, RoomEvent, TrackView, UnpublishReason};
use super::role::{Capabilities, Role, TrackSource};
use super::{RoomKey, RoomKind, RoomLimits};
use crate::identity::IdentityId;
use crate::media::ids::{ParticipantId, RoomId, SessionId, TrackId};
use crate::sfu::packet::{Codec, MediaKind};
use crate::sfu::speakers::SpeakerRanking;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;

/// Most speakers reported in an `ActiveSpeakers` event.
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
    #[error("this participant's role does not allow it")]
    NotAllowed,
    #[error("no such track")]
    TrackNotFound,
    #[error("no such participant in this call")]
    ParticipantNotFound,
    #[error("the room has closed")]
    Closed,
    #[error("the call has ended")]
    Ended,
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
            RoomError::ParticipantNotFound => "participant_not_found",
            RoomError::Closed => "closed",
            RoomError::Ended => "call_ended",
        }
    }
}

/// Who is joining.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub identity: IdentityId,
    /// The identity's raw ID.
    pub raw_id: Arc<str>,
    pub display_name: Option<Arc<str>>,
    /// May start the room if it does not exist (`voip` scope, or the call layer).
    pub can_create: bool,
    /// The role in an ACS Room (`None`: a group or 1:1 call participant).
    pub role: Option<Role>,
    pub session: SessionId,
    pub worker: usize,
    pub sink: MemberSink,
}

/// A participant in a room.
#[derive(Debug, Clone)]
pub struct Member {
    pub id: ParticipantId,
    pub identity: IdentityId,
    pub raw_id: Arc<str>,
    pub display_name: Option<Arc<str>>,
    pub role: Option<Role>,
    pub caps: Capabilities,
    /// Bumped by every role change: the media plane applies capabilities in this order.
    pub role_version: u64,
    pub session: SessionId,
    pub worker: usize,
    pub(super) sink: MemberSink,
    pub tracks: Vec<TrackId>,
}

/// A published track.
#[derive(Debug, Clone)]
pub struct TrackEntry {
    pub id: TrackId,
    pub owner: ParticipantId,
    pub kind: MediaKind,
    pub codec: Codec,
    pub source: TrackSource,
    pub layers: Vec<Layer>,
    pub muted: bool,
    /// The worker of the publisher's session.
    pub worker: usize,
    /// Who may see and receive it besides its owner (raw IDs; `None`: everyone in the room).
    pub audience: Option<Audience>,
}

/// The identities (raw IDs) a track is published to, when not to everyone: only their members
/// learn of it and may subscribe to it (a call connection's prompt to one caller).
pub type Audience = Arc<[Arc<str>]>;

impl TrackEntry {
    /// Whether `member` may know of this track and receive it.
    pub fn visible_to(&self, member: &Member) -> bool {
        self.owner == member.id || self.audience.as_ref().is_none_or(|a| a.iter().any(|raw| **raw == *member.raw_id))
    }

    pub fn view(&self) -> TrackView {
        TrackView {
            id: self.id,
            owner: self.owner,
            kind: self.kind,
            codec: self.codec,
            source: self.source,
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
    pub source: TrackSource,
    pub layers: Vec<Layer>,
    /// Publish to these identities only (`None`: to everyone).
    pub audience: Option<Audience>,
}

/// A member that left or was removed, with what the media plane must now forget.
#[derive(Debug, Clone)]
pub struct Departure {
    pub session: SessionId,
    pub worker: usize,
    pub tracks: Vec<TrackId>,
    /// Someone who left a meeting's lobby: how long it waited.
    pub waited: Option<std::time::Duration>,
}

/// A role change applied to the room, with what the media plane must now enforce.
#[derive(Debug, Clone)]
pub struct RoleApplied {
    pub session: SessionId,
    pub worker: usize,
    pub caps: Capabilities,
    /// The member's role version after this change.
    pub version: u64,
    /// Tracks unpublished because the new role does not allow their source.
    pub unpublished: Vec<TrackId>,
}

#[derive(Default)]
pub(super) struct RoomState {
    pub(super) closed: bool,
    pub(super) ended: bool,
    pub(super) members: BTreeMap<ParticipantId, Member>,
    tracks: BTreeMap<TrackId, TrackEntry>,
    levels: HashMap<TrackId, f32>,
    speakers: SpeakerRanking<ParticipantId>,
    /// The ranking last announced, for members who join after it.
    ranked: Vec<(ParticipantId, f32)>,
    observers: Vec<mpsc::Sender<Arc<RoomEvent>>>,
    /// A meeting's lobby: who waits to be admitted (never members; they receive nothing of the
    /// room but their own lobby state).
    pub(super) lobby: BTreeMap<ParticipantId, super::lobby::LobbyEntry>,
    /// A meeting room's live settings (who bypasses the lobby, who presents).
    pub(super) meeting: Option<Arc<crate::meeting_directory::MeetingRecord>>,
}

impl RoomState {
    /// Queue `event` for every member and observer.
    pub(super) fn emit(&mut self, event: RoomEvent) {
        let event = Arc::new(event);
        for m in self.members.values() {
            m.sink.deliver(&event);
        }
        self.notify_observers(&event);
    }

    fn notify_observers(&mut self, event: &Arc<RoomEvent>) {
        self.observers.retain(|o| match o.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("room observer not keeping up; event dropped");
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        });
    }

    /// Queue `event`, about `track`, for the members who may see that track, and for every
    /// observer.
    fn emit_about(&mut self, track: &TrackEntry, event: RoomEvent) {
        if track.audience.is_none() {
            return self.emit(event);
        }
        let event = Arc::new(event);
        for m in self.members.values().filter(|m| track.visible_to(m)) {
            m.sink.deliver(&event);
        }
        self.notify_observers(&event);
    }

    /// Whether someone may still join: the room is open, the call not over, and not full.
    pub(super) fn check_open(&self, limits: RoomLimits) -> Result<(), RoomError> {
        if self.closed {
            return Err(RoomError::Closed);
        }
        if self.ended {
            return Err(RoomError::Ended);
        }
        if self.members.len() >= limits.max_participants {
            return Err(RoomError::RoomFull);
        }
        Ok(())
    }

    /// Add a member with `role`, telling everyone; a member who may moderate a meeting also gets
    /// its lobby. Returns who was already there.
    pub(super) fn insert_member(&mut self, id: ParticipantId, req: JoinRequest, role: Option<Role>) -> Vec<MemberView> {
        let member = Member {
            id,
            identity: req.identity,
            raw_id: req.raw_id,
            display_name: req.display_name,
            role,
            caps: role.map_or(Capabilities::PARTICIPANT, Role::capabilities),
            role_version: 0,
            session: req.session,
            worker: req.worker,
            sink: req.sink,
            tracks: Vec::new(),
        };
        let snapshot: Vec<MemberView> = self.members.values().map(|m| self.view_for(m, &member)).collect();
        let joined = RoomEvent::MemberJoined(self.view(&member));
        self.emit(joined);
        let moderates = member.caps.moderate;
        self.members.insert(id, member);
        if moderates {
            self.show_lobby_to(id);
        }
        snapshot
    }

    /// `m` as everyone may see it: its tracks published to all.
    pub(super) fn view(&self, m: &Member) -> MemberView {
        self.view_with(m, |t| t.audience.is_none())
    }

    /// `m` as `viewer` sees it: with the tracks published to it too.
    pub(super) fn view_for(&self, m: &Member, viewer: &Member) -> MemberView {
        self.view_with(m, |t| t.visible_to(viewer))
    }

    fn view_with(&self, m: &Member, shown: impl Fn(&TrackEntry) -> bool) -> MemberView {
        MemberView {
            participant: m.id,
            identity: m.identity,
            raw_id: m.raw_id.clone(),
            display_name: m.display_name.clone(),
            role: m.role,
            tracks: m
                .tracks
                .iter()
                .filter_map(|t| self.tracks.get(t))
                .filter(|t| shown(t))
                .map(TrackEntry::view)
                .collect(),
        }
    }

    /// Remove one track of `owner`; tells everyone.
    fn drop_track(&mut self, owner: ParticipantId, track: TrackId, reason: UnpublishReason) {
        let Some(entry) = self.tracks.remove(&track) else { return };
        self.levels.remove(&track);
        if let Some(m) = self.members.get_mut(&owner) {
            m.tracks.retain(|t| *t != track);
        }
        self.emit_about(&entry, RoomEvent::TrackUnpublished { track, participant: owner, reason });
    }
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

    pub(super) fn state(&self) -> MutexGuard<'_, RoomState> {
        // A panic while holding the lock is a bug elsewhere; the room data itself is still
        // consistent (every section completes its updates before it can fail), so keep going.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Receive every event of this room (the call state machine; webhooks). An observer that
    /// stops reading misses events (logged); one that is dropped is forgotten.
    pub fn observe(&self, observer: mpsc::Sender<Arc<RoomEvent>>) {
        self.state().observers.push(observer);
    }

    pub(super) fn add_member(
        &self,
        req: JoinRequest,
        limits: RoomLimits,
    ) -> Result<(ParticipantId, Vec<MemberView>), RoomError> {
        let mut st = self.state();
        st.check_open(limits)?;
        let id = ParticipantId::next();
        let role = req.role;
        let snapshot = st.insert_member(id, req, role);
        Ok((id, snapshot))
    }

    /// Remove a member and its tracks, telling everyone (the member included), or someone waiting
    /// in the lobby (telling it and the moderators).
    pub(super) fn remove_member(&self, participant: ParticipantId, reason: EndReason) -> Option<Departure> {
        let mut st = self.state();
        if st.lobby.contains_key(&participant) {
            return st.remove_waiting(participant, reason).map(|entry| entry.departure());
        }
        let member = st.members.get(&participant)?.clone();
        for track in &member.tracks {
            st.drop_track(participant, *track, UnpublishReason::Left);
        }
        st.emit(RoomEvent::MemberLeft { participant, identity: member.identity, reason });
        st.members.remove(&participant);
        Some(Departure { session: member.session, worker: member.worker, tracks: member.tracks, waited: None })
    }

    /// Mark the room closed if nobody is left (members or waiting); returns true when it was
    /// (now) closed.
    pub(super) fn close_if_empty(&self) -> bool {
        let mut st = self.state();
        if st.members.is_empty() && st.lobby.is_empty() {
            st.closed = true;
        }
        st.closed
    }

    /// Add a track published by `participant`; tells everyone.
    pub fn publish(
        &self,
        participant: ParticipantId,
        req: PublishRequest,
        limits: RoomLimits,
    ) -> Result<TrackEntry, RoomError> {
        let mut st = self.state();
        let publishers = st.members.values().filter(|m| !m.tracks.is_empty()).count();
        let member = st.members.get(&participant).ok_or(RoomError::Closed)?;
        if !member.caps.may_publish(req.source) {
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
            source: req.source,
            layers: req.layers,
            muted: false,
            worker: member.worker,
            audience: req.audience,
        };
        if let Some(m) = st.members.get_mut(&participant) {
            m.tracks.push(entry.id);
        }
        st.tracks.insert(entry.id, entry.clone());
        st.emit_about(&entry, RoomEvent::TrackPublished(entry.view()));
        Ok(entry)
    }

    /// Remove a track of `participant`; tells everyone.
    pub fn unpublish(&self, participant: ParticipantId, track: TrackId) -> Result<(), RoomError> {
        let mut st = self.state();
        match st.tracks.get(&track) {
            Some(t) if t.owner == participant => {}
            _ => return Err(RoomError::TrackNotFound),
        }
        st.drop_track(participant, track, UnpublishReason::Unpublished);
        Ok(())
    }

    /// Mute or unmute a track. Its owner may do both; a member who may moderate may mute (not
    /// unmute) someone else's track. Returns the track (its worker enforces the mute).
    pub fn set_muted(&self, actor: ParticipantId, track: TrackId, muted: bool) -> Result<TrackEntry, RoomError> {
        let mut st = self.state();
        let moderates = st.members.get(&actor).is_some_and(|m| m.caps.moderate);
        let t = st.tracks.get_mut(&track).ok_or(RoomError::TrackNotFound)?;
        let by = if t.owner == actor {
            None
        } else if moderates && muted {
            Some(actor)
        } else if moderates {
            return Err(RoomError::NotAllowed);
        } else {
            return Err(RoomError::TrackNotFound);
        };
        t.muted = muted;
        let (entry, owner) = (t.clone(), t.owner);
        st.emit_about(&entry, RoomEvent::TrackMuted { track, participant: owner, muted, by });
        Ok(entry)
    }

    /// Mute a member's track on the authority of a trusted service (the call automation API,
    /// which checked its right to control the call): any track may be muted, none unmuted. `by`
    /// is the service's own member in the room, named to everyone as who muted.
    pub fn mute_by_service(&self, by: ParticipantId, track: TrackId) -> Result<TrackEntry, RoomError> {
        let mut st = self.state();
        let t = st.tracks.get_mut(&track).ok_or(RoomError::TrackNotFound)?;
        t.muted = true;
        let (entry, owner) = (t.clone(), t.owner);
        let by = (owner != by).then_some(by);
        st.emit_about(&entry, RoomEvent::TrackMuted { track, participant: owner, muted: true, by });
        Ok(entry)
    }

    /// Change a member's role: its capabilities follow, and tracks whose source the new role does
    /// not allow are unpublished. Tells everyone.
    pub fn set_role(&self, participant: ParticipantId, role: Role) -> Result<RoleApplied, RoomError> {
        let mut st = self.state();
        let member = st.members.get_mut(&participant).ok_or(RoomError::ParticipantNotFound)?;
        let caps = role.capabilities();
        let gained_moderation = caps.moderate && !member.caps.moderate;
        member.role = Some(role);
        member.caps = caps;
        member.role_version += 1;
        let (session, worker, version, tracks) =
            (member.session, member.worker, member.role_version, member.tracks.clone());
        st.emit(RoomEvent::RoleChanged { participant, role });
        if gained_moderation {
            st.show_lobby_to(participant);
        }
        let unpublished: Vec<TrackId> =
            tracks.into_iter().filter(|t| st.tracks.get(t).is_some_and(|e| !caps.may_publish(e.source))).collect();
        for t in &unpublished {
            st.drop_track(participant, *t, UnpublishReason::RoleChanged);
        }
        Ok(RoleApplied { session, worker, caps, version, unpublished })
    }

    /// Announce a new call state to everyone. `Disconnected` ends the call: every member's session
    /// leaves on it, and nobody can join any more.
    pub fn set_call_state(&self, state: super::events::CallState, reason: Option<EndReason>) {
        let mut st = self.state();
        if state == super::events::CallState::Disconnected {
            st.ended = true;
        }
        st.emit(RoomEvent::CallStateChanged { state, reason });
    }

    pub fn track(&self, track: TrackId) -> Option<TrackEntry> {
        self.state().tracks.get(&track).cloned()
    }

    /// A track as member `viewer` may see it: `None` when there is none, or it is published to
    /// others only (`viewer` must not learn that it exists).
    pub fn track_for(&self, track: TrackId, viewer: ParticipantId) -> Option<TrackEntry> {
        let st = self.state();
        let member = st.members.get(&viewer)?;
        st.tracks.get(&track).filter(|t| t.visible_to(member)).cloned()
    }

    pub fn member(&self, participant: ParticipantId) -> Option<Member> {
        self.state().members.get(&participant).cloned()
    }

    /// The members that are (a session of) `identity`.
    pub fn members_of(&self, identity: IdentityId) -> Vec<Member> {
        self.state().members.values().filter(|m| m.identity == identity).cloned().collect()
    }

    /// Every member.
    pub fn members(&self) -> Vec<Member> {
        self.state().members.values().cloned().collect()
    }

    pub fn member_count(&self) -> usize {
        self.state().members.len()
    }

    /// Take new loudness values of audio tracks; announce the speaker ranking when it changes.
    pub fn on_audio_levels(&self, levels: impl IntoIterator<Item = (TrackId, f32)>) {
        let mut st = self.state();
        // Only tracks published to everyone rank speakers: the ranking goes to everyone.
        for (track, level) in levels {
            if st.tracks.get(&track).is_some_and(|t| t.audience.is_none()) {
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
            st.ranked.clone_from(&ranked);
            st.emit(RoomEvent::ActiveSpeakers(ranked));
        }
    }

    /// The active speakers as last announced (loudest first), of those still members: what a
    /// member who joins now is told, so it does not wait for the next change.
    pub fn active_speakers(&self) -> Vec<(ParticipantId, f32)> {
        let st = self.state();
        st.ranked.iter().filter(|(p, _)| st.members.contains_key(p)).copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::events::MemberEvents;
    use super::super::{RoomMetrics, Rooms};
    use super::*;

    fn rooms() -> Rooms {
        let limits =
            RoomLimits { max_rooms: 10, max_participants: 3, max_publishers: 2, max_tracks_per_participant: 2 };
        Rooms::new(limits, RoomMetrics::new(&prometheus::Registry::new()))
    }

    fn request(can_create: bool, role: Option<Role>) -> (JoinRequest, MemberEvents) {
        let (sink, events) = MemberSink::channel();
        let req = JoinRequest {
            identity: IdentityId(uuid::Uuid::new_v4()),
            raw_id: "8:acs:x_1".into(),
            display_name: None,
            can_create,
            role,
            session: SessionId::next(),
            worker: 0,
            sink,
        };
        (req, events)
    }

    fn video(source: TrackSource) -> PublishRequest {
        PublishRequest { kind: MediaKind::Video, codec: Codec::Vp8, source, layers: vec![], audience: None }
    }

    fn drain(events: &mut MemberEvents) -> Vec<RoomEvent> {
        let mut out = Vec::new();
        while let Ok(e) = events.rx.try_recv() {
            out.push((*e).clone());
        }
        out
    }

    #[test]
    fn first_joiner_creates_last_leaver_removes() {
        let rooms = rooms();
        let key = RoomKey::Group(uuid::Uuid::new_v4());
        let (join_only, _) = request(false, None);
        assert_eq!(rooms.join(key.clone(), join_only).err(), Some(RoomError::NotFound));
        let (a, mut a_events) = request(true, None);
        let (room, pa, snapshot) = rooms.join(key.clone(), a).expect("create");
        assert!(snapshot.is_empty());
        let (b, _b_events) = request(false, None);
        let (room_b, pb, snapshot) = rooms.join(key.clone(), b).expect("join existing with voip.join");
        assert!(Arc::ptr_eq(&room, &room_b));
        assert_eq!(snapshot.len(), 1);
        assert!(matches!(drain(&mut a_events).as_slice(), [RoomEvent::MemberJoined(m)] if m.participant == pb));
        rooms.leave(&room, pa, EndReason::Left);
        assert!(room.member(pb).is_some());
        assert_eq!(rooms.len(), 1);
        rooms.leave(&room, pb, EndReason::Left);
        assert!(rooms.is_empty());
        assert!(rooms.by_id(room.id).is_none());
        // The key is free for a new call.
        let (c, _) = request(true, None);
        let (room_c, _, _) = rooms.join(key, c).expect("new room");
        assert!(!Arc::ptr_eq(&room, &room_c));
    }

    #[test]
    fn limits_and_track_events() {
        let rooms = rooms();
        let key = RoomKey::Group(uuid::Uuid::new_v4());
        let mut members = Vec::new();
        for _ in 0..3 {
            let (r, events) = request(true, None);
            let (room, p, _) = rooms.join(key.clone(), r).expect("join");
            members.push((room, p, events));
        }
        let (r, _) = request(true, None);
        assert_eq!(rooms.join(key.clone(), r).err(), Some(RoomError::RoomFull));
        let room = members[0].0.clone();
        let (p0, p1, p2) = (members[0].1, members[1].1, members[2].1);
        let t = room.publish(p0, video(TrackSource::Camera), rooms.limits()).expect("publish");
        room.publish(p0, video(TrackSource::Screen), rooms.limits()).expect("second track");
        assert_eq!(room.publish(p0, video(TrackSource::Camera), rooms.limits()).err(), Some(RoomError::TooManyTracks));
        room.publish(p1, video(TrackSource::Camera), rooms.limits()).expect("second publisher");
        assert_eq!(
            room.publish(p2, video(TrackSource::Camera), rooms.limits()).err(),
            Some(RoomError::TooManyPublishers)
        );
        let published = drain(&mut members[2].2).iter().filter(|e| matches!(e, RoomEvent::TrackPublished(_))).count();
        assert_eq!(published, 3);
        assert_eq!(room.unpublish(p1, t.id).err(), Some(RoomError::TrackNotFound), "only the owner");
        room.unpublish(p0, t.id).expect("unpublish");
        assert!(matches!(
            drain(&mut members[2].2).as_slice(),
            [RoomEvent::TrackUnpublished { reason: UnpublishReason::Unpublished, .. }]
        ));
        let gone = rooms.leave(&room, p0, EndReason::Left).expect("was a member");
        assert_eq!(gone.tracks.len(), 1, "the remaining track of p0");
    }

    #[test]
    fn a_consumer_may_not_publish_and_a_downgrade_unpublishes_what_the_role_forbids() {
        let rooms = rooms();
        let key = RoomKey::Group(uuid::Uuid::new_v4());
        let (c, _) = request(true, Some(Role::Consumer));
        let (room, consumer, _) = rooms.join(key.clone(), c).expect("join");
        assert_eq!(
            room.publish(consumer, video(TrackSource::Camera), rooms.limits()).err(),
            Some(RoomError::NotAllowed)
        );
        let (p, _) = request(true, Some(Role::Presenter));
        let (_, presenter, _) = rooms.join(key.clone(), p).expect("join");
        let (w, mut watcher) = request(true, Some(Role::Attendee));
        rooms.join(key, w).expect("join");
        let camera = room.publish(presenter, video(TrackSource::Camera), rooms.limits()).expect("camera");
        let screen = room.publish(presenter, video(TrackSource::Screen), rooms.limits()).expect("screen");
        drain(&mut watcher);
        let applied = room.set_role(presenter, Role::Attendee).expect("downgrade");
        assert_eq!(applied.unpublished, vec![screen.id], "an attendee may not share its screen");
        assert!(room.track(camera.id).is_some());
        let events = drain(&mut watcher);
        assert!(matches!(
            events.as_slice(),
            [
                RoomEvent::RoleChanged { role: Role::Attendee, .. },
                RoomEvent::TrackUnpublished { reason: UnpublishReason::RoleChanged, .. }
            ]
        ));
        let applied = room.set_role(presenter, Role::Consumer).expect("downgrade");
        assert_eq!(applied.unpublished, vec![camera.id]);
        assert!(!applied.caps.publish.contains(TrackSource::Microphone));
    }

    #[test]
    fn moderators_mute_others_but_do_not_unmute_them() {
        let rooms = rooms();
        let key = RoomKey::Group(uuid::Uuid::new_v4());
        let (p, _) = request(true, Some(Role::Presenter));
        let (room, presenter, _) = rooms.join(key.clone(), p).expect("join");
        let (a, _) = request(true, Some(Role::Attendee));
        let (_, attendee, _) = rooms.join(key, a).expect("join");
        let audio = PublishRequest {
            kind: MediaKind::Audio,
            codec: Codec::Opus,
            source: TrackSource::Microphone,
            layers: vec![],
            audience: None,
        };
        let mic = room.publish(attendee, audio.clone(), rooms.limits()).expect("mic");
        let own = room.publish(presenter, audio, rooms.limits()).expect("mic");
        assert!(room.set_muted(presenter, mic.id, true).expect("moderator mutes").muted);
        assert_eq!(room.set_muted(presenter, mic.id, false).err(), Some(RoomError::NotAllowed));
        assert_eq!(room.set_muted(attendee, own.id, true).err(), Some(RoomError::TrackNotFound));
        assert!(!room.set_muted(attendee, mic.id, false).expect("owner unmutes").muted);
    }

    /// A track published to some identities reaches only them: nobody else hears of it (not
    /// when it is published, muted or unpublished, not in a joiner's snapshot) or may look it up.
    #[test]
    fn a_track_with_an_audience_is_seen_only_by_it() {
        let rooms = rooms();
        let key = RoomKey::Group(uuid::Uuid::new_v4());
        let member = |raw: &str| {
            let (mut req, events) = request(true, None);
            req.raw_id = raw.into();
            (req, events)
        };
        let (s, mut speaker_events) = member("8:acs:x_service");
        let (room, speaker, _) = rooms.join(key.clone(), s).expect("join");
        let (a, mut alice_events) = member("8:acs:x_alice");
        let (_, alice, _) = rooms.join(key.clone(), a).expect("join");
        drain(&mut speaker_events);
        let audience: Audience = vec![Arc::<str>::from("8:acs:x_alice")].into();
        let whisper = PublishRequest {
            kind: MediaKind::Audio,
            codec: Codec::Opus,
            source: TrackSource::Microphone,
            layers: vec![],
            audience: Some(audience),
        };
        let track = room.publish(speaker, whisper, rooms.limits()).expect("publish");
        let (b, mut bob_events) = member("8:acs:x_bob");
        let (_, bob, snapshot) = rooms.join(key.clone(), b).expect("join");
        let speaker_view = snapshot.iter().find(|m| m.participant == speaker).expect("the speaker is listed");
        assert!(speaker_view.tracks.is_empty(), "bob's snapshot does not show the track");
        assert!(room.track_for(track.id, bob).is_none());
        assert!(room.track_for(track.id, alice).is_some());
        assert!(room.track_for(track.id, speaker).is_some(), "its owner sees it");
        rooms.leave(&room, bob, EndReason::Left);
        let (c, _) = member("8:acs:x_alice");
        let (_, alice_again, snapshot) = rooms.join(key, c).expect("join");
        let speaker_view = snapshot.iter().find(|m| m.participant == speaker).expect("the speaker is listed");
        assert_eq!(speaker_view.tracks.len(), 1, "another device of alice's sees the track");
        assert!(room.track_for(track.id, alice_again).is_some());
        room.mute_by_service(speaker, track.id).expect("mute");
        room.unpublish(speaker, track.id).expect("unpublish");
        let about_tracks = |events: &[RoomEvent]| {
            events
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        RoomEvent::TrackPublished(_)
                            | RoomEvent::TrackMuted { .. }
                            | RoomEvent::TrackUnpublished { .. }
                    )
                })
                .count()
        };
        let alice_saw = drain(&mut alice_events);
        assert_eq!(about_tracks(&alice_saw), 3, "published, muted, unpublished: {alice_saw:?}");
        let bob_saw = drain(&mut bob_events);
        assert_eq!(about_tracks(&bob_saw), 0, "{bob_saw:?}");
    }

    #[test]
    fn an_ended_call_takes_no_one() {
        let rooms = rooms();
        let key = RoomKey::Group(uuid::Uuid::new_v4());
        let (a, mut events) = request(true, None);
        let (room, _, _) = rooms.join(key.clone(), a).expect("join");
        room.set_call_state(super::super::events::CallState::Disconnected, Some(EndReason::HungUp));
        assert!(matches!(drain(&mut events).as_slice(), [RoomEvent::CallStateChanged { .. }]));
        let (b, _) = request(true, None);
        assert_eq!(rooms.join(key, b).err(), Some(RoomError::Ended));
    }

    #[test]
    fn speaker_ranking_is_emitted_on_change() {
        let rooms = rooms();
        let key = RoomKey::Group(uuid::Uuid::new_v4());
        let (a, mut events) = request(true, None);
        let (room, p, _) = rooms.join(key, a).expect("join");
        let t = room
            .publish(
                p,
                PublishRequest {
                    kind: MediaKind::Audio,
                    codec: Codec::Opus,
                    source: TrackSource::Microphone,
                    layers: vec![],
                    audience: None,
                },
                rooms.limits(),
            )
            .expect("audio");
        drain(&mut events);
        room.on_audio_levels([(t.id, 80.0)]);
        let emitted: [RoomEvent; 1] = drain(&mut events).try_into().expect("one event");
        let [RoomEvent::ActiveSpeakers(speakers)] = emitted else { panic!("speakers") };
        assert_eq!(speakers[0].0, p);
        room.on_audio_levels([(t.id, 81.0)]);
        assert!(drain(&mut events).is_empty(), "same ranking: no event");
    }
}
