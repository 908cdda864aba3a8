//! Live rooms. A group call, an invite-only room, a 1:1 call and a meeting are all `Room`s that
//! differ in their `RoomKind` (how they are found, who may create and join them); participants,
//! tracks, events and speaker ranking are the same code for all of them.
//!
//! Rooms live in a `DashMap` by key. A room is created by its first joiner and removed when its
//! last participant leaves; a join that races the removal retries on a fresh room.

mod role;
mod room;

pub use role::{Capabilities, Role, Sources, TrackSource, UnknownRole};
pub use room::{JoinRequest, Member, PublishRequest, Room, RoomError, TrackEntry};

use crate::media::ids::{ParticipantId, RoomId};
use crate::metrics::counter_vec;
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
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomKey::Group(id) => write!(f, "group:{id}"),
        }
    }
}

/// What kind of room it is; decides admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    GroupCall,
}

impl RoomKind {
    pub fn label(self) -> &'static str {
        match self {
            RoomKind::GroupCall => "group_call",
        }
    }

    fn of(key: &RoomKey) -> Self {
        match key {
            RoomKey::Group(_) => RoomKind::GroupCall,
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

    /// Join (creating the room if allowed and needed). Tells the other participants.
    pub fn join(
        &self,
        key: RoomKey,
        req: JoinRequest,
    ) -> Result<(Arc<Room>, ParticipantId, Vec<crate::signaling::messages::ParticipantInfo>), RoomError> {
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
    ) -> Result<(Arc<Room>, ParticipantId, Vec<crate::signaling::messages::ParticipantInfo>), RoomError> {
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

    /// Remove a participant (and its tracks); the room goes away with its last participant.
    /// Returns the tracks that were removed.
    pub fn leave(&self, room: &Arc<Room>, participant: ParticipantId, reason: &str) -> Vec<crate::media::ids::TrackId> {
        let (removed, was_member) = room.remove_member(participant, reason);
        if was_member {
            self.metrics.participants.with_label_values(&[room.kind.label()]).dec();
        }
        self.remove_if_empty(room);
        removed
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
