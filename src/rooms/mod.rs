//! Live rooms. A group call, an ACS Room, a 1:1 call and a meeting are all `Room`s that differ in
//! their `RoomKind` (how they are found, who may create and join them, which roles there are);
//! participants, tracks, domain events and speaker ranking are the same code for all of them.
//! Who may join is decided before `Rooms::join` (by the signaling layer against the token, the
//! Rooms directory or the call); the room enforces what each member's role allows.
//!
//! Rooms live in a `DashMap` by key. A room is created by its first joiner and removed when its
//! last participant leaves; a join that races the removal retries on a fresh room.

mod events;
mod lobby;
mod role;
mod room;

pub use events::{
    CallState, EndReason, Layer, MEMBER_QUEUE, MemberEvents, MemberSink, MemberView, RoomEvent, TrackView,
    UnpublishReason,
};
pub use lobby::{LobbyOutcome, LobbyView, MeetingEntry, Whom};
pub use role::{Capabilities, Role, Sources, TrackSource, UnknownRole};
pub use room::{Audience, Departure, JoinRequest, Member, PublishRequest, RoleApplied, Room, RoomError, TrackEntry};

use crate::media::ids::{ParticipantId, RoomId};
use crate::meeting_directory::{MeetingId, MeetingRecord};
use crate::meeting_policy::Joiner;
use crate::metrics::counter_vec;
use crate::room_directory::AcsRoomId;
use dashmap::DashMap;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
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
    /// A scheduled meeting: its settings decide who goes straight in and who waits in its lobby.
    Meeting(MeetingId),
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomKey::Group(id) => write!(f, "group:{id}"),
            RoomKey::Room(id) => write!(f, "room:{id}"),
            RoomKey::Call(id) => write!(f, "call:{id}"),
            RoomKey::Meeting(id) => write!(f, "meeting:{id}"),
        }
    }
}

/// What kind of room it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    GroupCall,
    Room,
    Call,
    Meeting,
}

impl RoomKind {
    pub fn label(self) -> &'static str {
        match self {
            RoomKind::GroupCall => "group_call",
            RoomKind::Room => "room",
            RoomKind::Call => "call",
            RoomKind::Meeting => "meeting",
        }
    }

    fn of(key: &RoomKey) -> Self {
        match key {
            RoomKey::Group(_) => RoomKind::GroupCall,
            RoomKey::Room(_) => RoomKind::Room,
            RoomKey::Call(_) => RoomKind::Call,
            RoomKey::Meeting(_) => RoomKind::Meeting,
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
    /// `switchboard_lobby_waiting`: people waiting in meeting lobbies.
    pub lobby_waiting: IntGauge,
    /// `switchboard_lobby_wait_seconds`: how long people waited, whatever ended the wait.
    pub lobby_wait: Histogram,
    /// `switchboard_lobby_admissions_total{how}`: `bypass` (straight in) or `admitted`.
    pub lobby_admissions: IntCounterVec,
    /// `switchboard_lobby_exits_total{reason}`: `rejected`, `timeout`, `left`, `meeting_deleted`.
    pub lobby_exits: IntCounterVec,
    /// `switchboard_meeting_wrong_passcodes_total`.
    pub wrong_passcodes: IntCounter,
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
            lobby_waiting: {
                let g = IntGauge::new("lobby_waiting", "People waiting in meeting lobbies")
                    .expect("constant gauge options are valid");
                registry.register(Box::new(g.clone())).expect("registered once");
                g
            },
            lobby_wait: {
                let h = Histogram::with_opts(
                    HistogramOpts::new("lobby_wait_seconds", "Time spent in a meeting lobby, however the wait ended")
                        .buckets(vec![1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0]),
                )
                .expect("constant histogram options are valid");
                registry.register(Box::new(h.clone())).expect("registered once");
                h
            },
            lobby_admissions: counter_vec(
                registry,
                "lobby_admissions_total",
                "Meeting entries: straight in (bypass) or admitted from the lobby",
                &["how"],
            ),
            lobby_exits: counter_vec(
                registry,
                "lobby_exits_total",
                "Lobby waits that ended without admission, by reason",
                &["reason"],
            ),
            wrong_passcodes: {
                let c = IntCounter::new("meeting_wrong_passcodes_total", "Meeting joins refused for a wrong passcode")
                    .expect("constant counter options are valid");
                registry.register(Box::new(c.clone())).expect("registered once");
                c
            },
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
            let room = self.get_or_create(&key, req.can_create, |_| {})?;
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

    /// The live room of `key`, created (and set up by `init` before anyone can see it) when there
    /// is none and `can_create`.
    fn get_or_create(&self, key: &RoomKey, can_create: bool, init: impl FnOnce(&Room)) -> Result<Arc<Room>, RoomError> {
        if let Some(r) = self.by_key.get(key) {
            return Ok(r.clone());
        }
        if !can_create {
            return Err(RoomError::NotFound);
        }
        if self.by_key.len() >= self.limits.max_rooms {
            return Err(RoomError::TooManyRooms);
        }
        let kind = RoomKind::of(key);
        let candidate = Arc::new(Room::new(key.clone(), kind));
        init(&candidate);
        let room = self.by_key.entry(key.clone()).or_insert(candidate.clone()).clone();
        if Arc::ptr_eq(&room, &candidate) {
            self.by_id.insert(room.id, room.clone());
            self.metrics.rooms.with_label_values(&[kind.label()]).inc();
        }
        Ok(room)
    }

    /// Remove a participant (and its tracks), telling everyone; the room goes away with its last
    /// participant. Returns what the media plane must forget (`None`: it was not a member).
    pub fn leave(&self, room: &Arc<Room>, participant: ParticipantId, reason: EndReason) -> Option<Departure> {
        let departure = room.remove_member(participant, reason);
        match departure.as_ref().map(|d| d.waited) {
            Some(Some(waited)) => self.count_lobby_exit(waited, reason),
            Some(None) => self.metrics.participants.with_label_values(&[room.kind.label()]).dec(),
            None => {}
        }
        self.remove_if_empty(room);
        departure
    }

    /// Join a meeting (creating its room with `record` as its settings if needed): straight in,
    /// or into its lobby, as its settings decide under the room's lock.
    pub fn join_meeting(
        &self,
        id: MeetingId,
        record: Arc<MeetingRecord>,
        req: JoinRequest,
        joiner: Joiner,
    ) -> Result<(Arc<Room>, MeetingEntry), RoomError> {
        let result = self.join_meeting_inner(id, record, req, joiner);
        let label = match &result {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        self.metrics.joins.with_label_values(&[label]).inc();
        match &result {
            Ok((room, MeetingEntry::Joined { .. })) => {
                self.metrics.participants.with_label_values(&[room.kind.label()]).inc();
                self.metrics.lobby_admissions.with_label_values(&["bypass"]).inc();
            }
            Ok((_, MeetingEntry::Waiting { .. })) => self.metrics.lobby_waiting.inc(),
            Err(_) => {}
        }
        result
    }

    fn join_meeting_inner(
        &self,
        id: MeetingId,
        record: Arc<MeetingRecord>,
        req: JoinRequest,
        joiner: Joiner,
    ) -> Result<(Arc<Room>, MeetingEntry), RoomError> {
        let key = RoomKey::Meeting(id);
        loop {
            let room = self.get_or_create(&key, true, |room| room.set_meeting(record.clone()))?;
            match room.enter_meeting(req.clone(), joiner, self.limits) {
                Ok(entry) => return Ok((room, entry)),
                Err(RoomError::Closed) => continue,
                Err(e) => {
                    self.remove_if_empty(&room);
                    return Err(e);
                }
            }
        }
    }

    /// Let people in from a meeting's lobby.
    pub fn admit(&self, room: &Room, whom: &Whom) -> Vec<LobbyOutcome> {
        let admitted = room.admit(whom, self.limits);
        for a in &admitted {
            self.metrics.lobby_waiting.dec();
            self.metrics.lobby_wait.observe(a.waited.as_secs_f64());
            self.metrics.lobby_admissions.with_label_values(&["admitted"]).inc();
            self.metrics.participants.with_label_values(&[room.kind.label()]).inc();
        }
        admitted
    }

    /// Turn people away from a meeting's lobby (rejected, timed out, meeting deleted).
    pub fn turn_away(&self, room: &Arc<Room>, whom: &Whom, reason: EndReason) -> Vec<LobbyOutcome> {
        let out = room.turn_away(whom, reason);
        for o in &out {
            self.count_lobby_exit(o.waited, reason);
        }
        self.remove_if_empty(room);
        out
    }

    fn count_lobby_exit(&self, waited: std::time::Duration, reason: EndReason) {
        self.metrics.lobby_waiting.dec();
        self.metrics.lobby_wait.observe(waited.as_secs_f64());
        self.metrics.lobby_exits.with_label_values(&[reason.label()]).inc();
    }

    /// Count a meeting join refused for a wrong passcode.
    pub fn count_wrong_passcode(&self) {
        self.metrics.wrong_passcodes.inc();
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
