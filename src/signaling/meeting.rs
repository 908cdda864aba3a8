//! Meetings over signaling: joining by meeting ID and passcode or by link, waiting in the lobby
//! (admitted, turned away, or timed out), and the lobby requests of organizers and presenters.
//!
//! A session in the lobby has no `joined` call and no admission on its media worker: every media
//! request is refused (`InLobby`), it is offered nothing, and it learns only its own lobby state.

use super::messages::{CallState, ErrorCode, ServerMessage};
use super::session::{Failure, Joined, MeetingAt, SessionHandler, disconnected, room_failure, unavailable};
use crate::media::ids::ParticipantId;
use crate::meeting_directory::{MeetingId, MeetingRecord};
use crate::rooms::{
    Capabilities, EndReason, JoinRequest, MeetingEntry, MemberSink, Room, RoomEvent, RoomKey, RoomKind, Whom,
};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waiting in a meeting's lobby.
pub(crate) struct Waiting {
    pub room: Arc<Room>,
    pub participant: ParticipantId,
    /// When the wait ends with `LobbyTimeout`.
    pub deadline: tokio::time::Instant,
}

impl SessionHandler {
    /// Join a meeting: straight in, or into its lobby, as its settings decide.
    pub(super) async fn join_meeting(
        &mut self,
        id: Option<u64>,
        at: MeetingAt,
        display_name: Option<Arc<str>>,
    ) -> Result<ServerMessage, Failure> {
        let record = self.find_meeting(at).await?;
        let r = self.registered()?;
        let joiner = record.joiner(r.identity(), r.org);
        let (sink, events) = MemberSink::channel();
        let request = JoinRequest {
            identity: r.identity(),
            raw_id: r.raw_id.clone(),
            display_name: display_name.or_else(|| r.display_name.clone()),
            can_create: true,
            role: None,
            session: self.session,
            worker: self.worker,
            sink,
        };
        let meeting = record.id;
        let join_meeting_id = record.join_meeting_id.to_string();
        let (room, entry) =
            self.ctx.rooms.join_meeting(meeting, Arc::new(record), request, joiner).map_err(|e| room_failure(&e))?;
        self.room_events = Some(events);
        let room_name = RoomKey::Meeting(meeting).to_string();
        match entry {
            MeetingEntry::Joined { participant, role, snapshot } => {
                let caps = role.capabilities();
                self.joined =
                    Some(Joined { room: room.clone(), participant, caps, subscriptions: HashMap::new(), call: None });
                if self.ctx.live.admit(self.worker, self.session, room.id, caps, 0).await.is_err() {
                    self.leave(EndReason::ServerShutdown).await;
                    return Err(unavailable());
                }
                tracing::info!(session = %self.session, %participant, room = %room_name, "joined a meeting");
                Ok(ServerMessage::Joined {
                    id,
                    participant_id: participant.0,
                    room: room_name,
                    state: CallState::Connected,
                    call_id: None,
                    meeting_id: Some(join_meeting_id.clone()),
                    role: Some(role),
                    capabilities: caps.into(),
                    participants: snapshot.iter().map(Into::into).collect(),
                })
            }
            MeetingEntry::Waiting { participant } => {
                let deadline = tokio::time::Instant::now() + self.ctx.lobby_timeout;
                self.waiting = Some(Waiting { room, participant, deadline });
                tracing::info!(session = %self.session, %participant, room = %room_name, "waiting in a meeting's lobby");
                Ok(ServerMessage::Joined {
                    id,
                    participant_id: participant.0,
                    room: room_name,
                    state: CallState::InLobby,
                    call_id: None,
                    meeting_id: Some(join_meeting_id.clone()),
                    role: None,
                    capabilities: Capabilities::NONE.into(),
                    participants: Vec::new(),
                })
            }
        }
    }

    /// The meeting a join names, if the address may still try and the passcode matches. Unknown
    /// meeting IDs and wrong passcodes count against the address (and the meeting).
    async fn find_meeting(&self, at: MeetingAt) -> Result<MeetingRecord, Failure> {
        let addr = self.remote.ip();
        let now = Instant::now();
        let refused = |reason: &str, code: ErrorCode, message: &str| {
            self.ctx.rooms.count_join_failure(reason);
            (code, message.to_owned())
        };
        if !self.ctx.passcodes.address_allowed(addr, now) {
            return Err(refused(
                "rate_limited",
                ErrorCode::RateLimited,
                "too many wrong meeting IDs or passcodes from this address",
            ));
        }
        let directory = self.ctx.meeting_directory.clone();
        let (record, passcode) = match at {
            MeetingAt::JoinId { join_id, passcode } => {
                let record = tokio::task::spawn_blocking(move || directory.by_join_id(&join_id)).await;
                (record, Some(passcode.unwrap_or_default()))
            }
            MeetingAt::Link(link) => (tokio::task::spawn_blocking(move || directory.by_link(&link)).await, None),
        };
        let record = record
            .map_err(|_| (ErrorCode::InternalError, "the meeting lookup failed".to_owned()))?
            .map_err(|_| (ErrorCode::ServiceUnavailable, "the meeting store is unavailable".to_owned()))?;
        let Some(record) = record else {
            self.ctx.passcodes.failed(addr, None, now);
            return Err(refused("meeting_not_found", ErrorCode::MeetingNotFound, "no meeting has that ID or link"));
        };
        if let Some(passcode) = passcode {
            if !self.ctx.passcodes.meeting_allowed(record.id, now) {
                return Err(refused(
                    "rate_limited",
                    ErrorCode::RateLimited,
                    "too many wrong passcodes for this meeting",
                ));
            }
            if !record.passcode_matches(&passcode) {
                self.ctx.passcodes.failed(addr, Some(record.id), now);
                self.ctx.rooms.count_wrong_passcode();
                return Err(refused("wrong_passcode", ErrorCode::WrongPasscode, "the passcode does not match"));
            }
        }
        Ok(record)
    }

    /// An event of the meeting this session waits to enter: only its own lobby state reaches it.
    pub(super) async fn on_lobby_event(&mut self, event: &RoomEvent) {
        let Some(me) = self.waiting.as_ref().map(|w| w.participant) else { return };
        match event {
            RoomEvent::Admitted { participant, role, participants } if *participant == me => {
                let w = self.waiting.take().expect("checked above: this session is waiting");
                let caps = role.capabilities();
                self.joined = Some(Joined {
                    room: w.room.clone(),
                    participant: me,
                    caps,
                    subscriptions: HashMap::new(),
                    call: None,
                });
                if self.ctx.live.admit(self.worker, self.session, w.room.id, caps, 0).await.is_err() {
                    self.end_session(EndReason::ServerShutdown, crate::media::quic::close_code::SERVER_SHUTDOWN).await;
                    return;
                }
                tracing::info!(session = %self.session, participant = %me, "admitted from the lobby");
                self.send(ServerMessage::CallStateChanged { state: CallState::Connected, code: None, reason: None });
                self.send(ServerMessage::Admitted {
                    participant_id: me.0,
                    role: *role,
                    capabilities: caps.into(),
                    participants: participants.iter().map(Into::into).collect(),
                });
                self.send_current_speakers();
            }
            RoomEvent::MemberLeft { participant, reason, .. } if *participant == me => {
                self.waiting = None;
                self.room_events = None;
                self.send(disconnected(*reason));
            }
            _ => {}
        }
    }

    /// When this session's lobby wait times out.
    pub fn lobby_deadline(&self) -> Option<tokio::time::Instant> {
        self.waiting.as_ref().map(|w| w.deadline)
    }

    /// Nobody admitted this session in time: leave the lobby. The room tells this session
    /// (`MemberLeft`, `LobbyTimeout`), unless it was admitted a moment ago (`Admitted` follows).
    pub async fn lobby_timed_out(&mut self) {
        let Some(w) = self.waiting.as_mut() else { return };
        // Not again: what the room says next ends the wait either way.
        w.deadline = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
        let (room, participant) = (w.room.clone(), w.participant);
        self.ctx.rooms.turn_away(&room, &Whom::Participants(vec![participant]), EndReason::LobbyTimeout);
    }

    /// (Organizer, presenters) let people in from the lobby.
    pub(super) fn admit_lobby(&mut self, id: Option<u64>, ids: Vec<u64>, all: bool) -> Result<ServerMessage, Failure> {
        let room = self.meeting_moderator()?;
        self.ctx.rooms.admit(&room, &whom(ids, all));
        Ok(ServerMessage::Ok { id })
    }

    /// (Organizer, presenters) turn people away from the lobby.
    pub(super) fn reject_lobby(&mut self, id: Option<u64>, ids: Vec<u64>, all: bool) -> Result<ServerMessage, Failure> {
        let room = self.meeting_moderator()?;
        self.ctx.rooms.turn_away(&room, &whom(ids, all), EndReason::LobbyRejected);
        Ok(ServerMessage::Ok { id })
    }

    fn meeting_moderator(&self) -> Result<Arc<Room>, Failure> {
        let j = self.joined()?;
        if j.room.kind != RoomKind::Meeting || !j.caps.moderate {
            return Err((ErrorCode::NotAllowed, "only a meeting's organizer and presenters manage its lobby".into()));
        }
        Ok(j.room.clone())
    }
}

fn whom(ids: Vec<u64>, all: bool) -> Whom {
    if all { Whom::All } else { Whom::Participants(ids.into_iter().map(ParticipantId).collect()) }
}

/// One-minute windows of failures by key.
#[derive(Debug)]
struct Windows<K: std::hash::Hash + Eq> {
    map: dashmap::DashMap<K, (Instant, u32)>,
}

impl<K: std::hash::Hash + Eq + Clone> Windows<K> {
    fn new() -> Self {
        Self { map: dashmap::DashMap::new() }
    }

    const WINDOW: Duration = Duration::from_secs(60);
    /// Beyond this many keys, expired windows are dropped (bounding what a spray of addresses
    /// can make the server hold).
    const MAX_KEYS: usize = 100_000;

    fn below(&self, key: &K, limit: u32, now: Instant) -> bool {
        self.map.get(key).is_none_or(|w| now.saturating_duration_since(w.0) >= Self::WINDOW || w.1 < limit)
    }

    fn add(&self, key: K, now: Instant) {
        if self.map.len() > Self::MAX_KEYS {
            self.map.retain(|_, (start, _)| now.saturating_duration_since(*start) < Self::WINDOW);
        }
        let mut w = self.map.entry(key).or_insert((now, 0));
        if now.saturating_duration_since(w.0) >= Self::WINDOW {
            *w = (now, 0);
        }
        w.1 += 1;
    }
}

/// Limits wrong meeting IDs and passcodes, per client address and per meeting, per minute.
#[derive(Debug)]
pub struct PasscodeGuard {
    per_address: u32,
    per_meeting: u32,
    addresses: Windows<IpAddr>,
    meetings: Windows<MeetingId>,
}

impl PasscodeGuard {
    pub fn new(per_address: u32, per_meeting: u32) -> Self {
        Self { per_address, per_meeting, addresses: Windows::new(), meetings: Windows::new() }
    }

    /// Whether this address may try another meeting ID or passcode now.
    pub fn address_allowed(&self, addr: IpAddr, now: Instant) -> bool {
        self.addresses.below(&addr, self.per_address, now)
    }

    /// Whether anyone may try another passcode for this meeting now.
    pub fn meeting_allowed(&self, meeting: MeetingId, now: Instant) -> bool {
        self.meetings.below(&meeting, self.per_meeting, now)
    }

    /// Record a wrong meeting ID (`meeting` is `None`) or a wrong passcode.
    pub fn failed(&self, addr: IpAddr, meeting: Option<MeetingId>, now: Instant) {
        self.addresses.add(addr, now);
        if let Some(m) = meeting {
            self.meetings.add(m, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_passcodes_are_limited_per_address_and_per_meeting_for_a_minute() {
        let guard = PasscodeGuard::new(2, 3);
        let t0 = Instant::now();
        let (a, b) = ("127.0.0.1".parse().expect("ip"), "127.0.0.2".parse().expect("ip"));
        let m = MeetingId(uuid::Uuid::new_v4());
        guard.failed(a, Some(m), t0);
        assert!(guard.address_allowed(a, t0));
        guard.failed(a, None, t0);
        assert!(!guard.address_allowed(a, t0), "two failures from a: its budget is used");
        assert!(guard.address_allowed(b, t0), "per address");
        assert!(guard.meeting_allowed(m, t0));
        guard.failed(b, Some(m), t0);
        guard.failed(b, Some(m), t0);
        assert!(!guard.meeting_allowed(m, t0), "three wrong passcodes for m, from any address");
        let later = t0 + Duration::from_secs(61);
        assert!(guard.address_allowed(a, later) && guard.meeting_allowed(m, later), "a minute later");
    }
}
