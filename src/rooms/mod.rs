//! Live rooms. A group call, an ACS Room, a 1:1 call and a meeting are all `Room`s that differ in
//! their `RoomKind` (how they are found, who may create and join them, which roles there are);
//! participants, tracks, domain events and speaker ranking are the same code for all of them.
//! Who may join is decided before `Rooms::join` (by the signaling layer against the token, the
//! Rooms directory or the call); the room enforces what each member's role allows.
//!
//! Rooms live in a `DashMap` by key. A room is created by its first joiner and removed when its
//! last participant leaves; a join that races the removal retries on a fresh room.

mod events;
mod role;
mod room;

pub use events::{
    CallState, EndReason, Layer, MEMBER_QUEUE, MemberEvents, MemberSink, MemberView, RoomEvent, TrackView,
    UnpublishReason,
};
pub use role::{Capabilities, Role, Sources, TrackSource, UnknownRole};
pub use room::{Departure, JoinRequest, Member, PublishRequest, RoleApplied, Room, RoomError, TrackEntry};

use crate::media::ids::{ParticipantId, RoomId};
use crate::metrics::counter_vec;
use crate::room_directory::AcsRoomId;
use dashmap::DashMap;
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry as PromRegistry};
use std::fmt;
use std::sync::Arc;
use uuid::Uuid;

/// How a room is found.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoomKey {
    /// A group call: anyone with a valid token joins by its group ID.
    Group(Uuid),
    /// An ACS Room (`/rooms` API): only its listed participants join, with their roles.
    Room(AcsRoomId),
    /// A 1:1 call (or a small group ring): its caller and the callees who accept.
    Call(Uuid),
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomKey::Group(id) => write!(f, "group:{id}"),
            RoomKey::Room(id) => write!(f, "room:{id}"),
            RoomKey::Call(id) => write!(f, "call:{id}"),
        }
    }
}

/// What kind of room it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    GroupCall,
    Room,
    Call,
}

impl RoomKind {
    pub fn label(self) -> &'static str {
        match self {
            RoomKind::GroupCall => "group_call",
            RoomKind::Room => "room",
            RoomKind::Call => "call",
        }
    }

    fn of(key: &RoomKey) -> Self {
        match key {
            RoomKey::Group(_) => RoomKind::GroupCall,
            RoomKey::Room(_) => RoomKind::Room,
            RoomKey::Call(_) => RoomKind::Call,
        }
    }
}

/// Limits the registry enforces.
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    pub max_rooms: usize,
    pub max_participants: usize,
    pub max_publishers: usize,
    pub max_tracks_per_participant: usize,
}

/// Room and participant metrics.
pub struct RoomMetrics {
    pub rooms: IntGaugeVec,
    pub participants: IntGaugeVec,
    pub joins: IntCounterVec,
    /// `switchboard_role_changes_total{result}`: role changes and removals applied to live calls.
    pub role_changes: IntCounterVec,
}

impl RoomMetrics {
    pub fn new(registry: &PromRegistry) -> Self {
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["kind"]).expect("constant gauge options are valid");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        Self {
            rooms: gauge("rooms", "Live rooms by kind"),
            participants: gauge("participants", "Participants in live rooms by kind"),
            joins: counter_vec(
                registry,
                "joins_total",
                "Join attempts by result (ok or the failure reason)",
                &["result"],
            ),
            role_changes: counter_vec(
                registry,
                "role_changes_total",
                "Role changes and removals applied to live participants, by what was applied",
                &["change"],
            ),
        }
    }
}

/// All live rooms.
pub struct Rooms {
    by_key: DashMap<RoomKey, Arc<Room>>,
    by_id: DashMap<RoomId, Arc<Room>>,
    limits: RoomLimits,
    metrics: RoomMetrics,
}

impl Rooms {
    pub fn new(limits: RoomLimits, metrics: RoomMetrics) -> Self {
        Self { by_key: DashMap::new(), by_id: DashMap::new(), limits, metrics }
    }

    pub fn limits(&self) -> RoomLimits {
        self.limits
    }

    /// Count a join attempt that failed before reaching a room (bad token, rate limit...).
    pub fn count_join_failure(&self, reason: &str) {
        self.metrics.joins.with_label_values(&[reason]).inc();
    }

    /// Count a role change (`downgrade`, `upgrade`, `unchanged`) or removal applied to a live
    /// participant.
    pub fn count_role_change(&self, change: &str) {
        self.metrics.role_changes.with_label_values(&[change]).inc();
    }

    /// Join (creating the room if allowed and needed). Tells the other participants; returns the
    /// room, the new participant's ID and who was already there.
    pub fn join(
        &self,
        key: RoomKey,
        req: JoinRequest,
    ) -> Result<(Arc<Room>, ParticipantId, Vec<MemberView>), RoomError> {
        let result = self.join_inner(key, req);
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        self.metrics.joins.with_label_values(&[label]).inc();
        result
    }

    fn join_inner(
        &self,
        key: RoomKey,
        req: JoinRequest,
    ) -> Result<(Arc<Room>, ParticipantId, Vec<MemberView>), RoomError> {
        let kind = RoomKind::of(&key);
        loop {
            let room = match self.by_key.get(&key) {
                Some(r) => r.clone(),
                None => {
                    if !req.can_create {
                        return Err(RoomError::NotFound);
                    }
                    if self.by_key.len() >= self.limits.max_rooms {
                        return Err(RoomError::TooManyRooms);
                    }
                    let candidate = Arc::new(Room::new(key.clone(), kind));
                    let room = self.by_key.entry(key.clone()).or_insert(candidate.clone()).clone();
                    if Arc::ptr_eq(&room, &candidate) {
                        self.by_id.insert(room.id, room.clone());
                        self.metrics.rooms.with_label_values(&[kind.label()]).inc();
                    }
                    room
                }
            };
            match room.add_member(req.clone(), self.limits) {
                Ok((pid, snapshot)) => {
                    self.metrics.participants.with_label_values(&[kind.label()]).inc();
                    return Ok((room, pid, snapshot));
                }
                Err(RoomError::Closed) => continue,
                Err(e) => {
                    self.remove_if_empty(&room);
                    return Err(e);
                }
            }
        }
    }

    /// Remove a participant (and its tracks), telling everyone; the room goes away with its last
    /// participant. Returns what the media plane must forget (`None`: it was not a member).
    pub fn leave(&self, room: &Arc<Room>, participant: ParticipantId, reason: EndReason) -> Option<Departure> {
        let departure = room.remove_member(participant, reason);
        if departure.is_some() {
            self.metrics.participants.with_label_values(&[room.kind.label()]).dec();
        }
        self.remove_if_empty(room);
        departure
    }

    fn remove_if_empty(&self, room: &Arc<Room>) {
        if room.close_if_empty() {
            let removed = self.by_key.remove_if(&room.key, |_, r| Arc::ptr_eq(r, room)).is_some();
            self.by_id.remove(&room.id);
            if removed {
                self.metrics.rooms.with_label_values(&[room.kind.label()]).dec();
            }
        }
    }

    pub fn get(&self, key: &RoomKey) -> Option<Arc<Room>> {
        self.by_key.get(key).map(|r| r.clone())
    }

    pub fn by_id(&self, id: RoomId) -> Option<Arc<Room>> {
        self.by_id.get(&id).map(|r| r.clone())
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every live room (for shutdown notices).
    pub fn all(&self) -> Vec<Arc<Room>> {
        self.by_key.iter().map(|r| r.clone()).collect()
    }
}
