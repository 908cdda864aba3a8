//! A meeting's lobby. Who may enter a meeting directly, who waits, and who is let in are all
//! decided here, under the room's lock, against the meeting's live settings: a join racing a
//! change of `lobbyBypassSettings`, or an admission racing a leave, sees one consistent state.
//!
//! Someone waiting is not a member: it gets no room events but its own (`Admitted`, or
//! `MemberLeft` with why it was turned away), and its session is not admitted on any media worker,
//! so it can neither publish nor subscribe. Members who may moderate (organizer, presenters) are
//! shown the lobby (`LobbyChanged`).

use super::RoomLimits;
use super::events::{EndReason, MemberView, RoomEvent};
use super::role::Role;
use super::room::{Departure, JoinRequest, Room, RoomError, RoomState};
use crate::identity::IdentityId;
use crate::media::ids::ParticipantId;
use crate::meeting_directory::MeetingRecord;
use crate::meeting_policy::Joiner;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Someone waiting to be admitted.
#[derive(Debug)]
pub struct LobbyEntry {
    request: JoinRequest,
    joiner: Joiner,
    since: Instant,
    /// Unix milliseconds, for listings.
    since_ms: i64,
}

impl LobbyEntry {
    pub(super) fn departure(&self) -> Departure {
        Departure {
            session: self.request.session,
            worker: self.request.worker,
            tracks: Vec::new(),
            waited: Some(self.since.elapsed()),
        }
    }
}

/// A lobby entry as organizers and presenters (and the REST API) see it.
#[derive(Debug, Clone, PartialEq)]
pub struct LobbyView {
    pub participant: ParticipantId,
    pub identity: IdentityId,
    pub raw_id: Arc<str>,
    pub display_name: Option<Arc<str>>,
    /// Unix milliseconds.
    pub waiting_since_ms: i64,
}

/// Where a meeting join landed.
#[derive(Debug, Clone)]
pub enum MeetingEntry {
    /// Straight in (the lobby was bypassed), with this role and who was there.
    Joined { participant: ParticipantId, role: Role, snapshot: Vec<MemberView> },
    /// In the lobby.
    Waiting { participant: ParticipantId },
}

/// Whom an admission or rejection is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Whom {
    All,
    Participants(Vec<ParticipantId>),
    /// Everyone waiting as one of these identities (the REST API names identities).
    Identities(Vec<IdentityId>),
}

/// Someone who left the lobby by being admitted or turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LobbyOutcome {
    pub participant: ParticipantId,
    pub waited: Duration,
}

impl Room {
    /// Set (or replace) a meeting room's live settings. Later joins are decided by them; who is in
    /// stays in, who waits keeps waiting.
    pub fn set_meeting(&self, record: Arc<MeetingRecord>) {
        self.state().meeting = Some(record);
    }

    /// Join a meeting room: straight in when its settings let `joiner` bypass the lobby (as a
    /// presenter when they let it present), else into the lobby.
    pub(super) fn enter_meeting(
        &self,
        request: JoinRequest,
        joiner: Joiner,
        limits: RoomLimits,
    ) -> Result<MeetingEntry, RoomError> {
        let mut st = self.state();
        st.check_open(limits)?;
        let record = st.meeting.clone().ok_or(RoomError::Closed)?;
        let participant = ParticipantId::next();
        if record.bypasses_lobby(&joiner) {
            let role = meeting_role(&record, &joiner);
            let snapshot = st.insert_member(participant, request, Some(role));
            return Ok(MeetingEntry::Joined { participant, role, snapshot });
        }
        if st.members.len() + st.lobby.len() >= limits.max_participants {
            return Err(RoomError::RoomFull);
        }
        let since_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        st.lobby.insert(participant, LobbyEntry { request, joiner, since: Instant::now(), since_ms });
        st.emit_lobby_changed();
        Ok(MeetingEntry::Waiting { participant })
    }

    /// Let people in from the lobby, each with the role the meeting's settings give it now.
    /// Those no longer waiting (they left, were admitted or turned away a moment ago) are skipped.
    pub(super) fn admit(&self, whom: &Whom, limits: RoomLimits) -> Vec<LobbyOutcome> {
        let mut st = self.state();
        let Some(record) = st.meeting.clone() else { return Vec::new() };
        let mut admitted = Vec::new();
        for participant in st.waiting(whom) {
            if st.members.len() >= limits.max_participants {
                break;
            }
            let Some(entry) = st.lobby.remove(&participant) else { continue };
            let role = meeting_role(&record, &entry.joiner);
            let sink = entry.request.sink.clone();
            let snapshot = st.insert_member(participant, entry.request, Some(role));
            sink.deliver(&Arc::new(RoomEvent::Admitted { participant, role, participants: snapshot }));
            admitted.push(LobbyOutcome { participant, waited: entry.since.elapsed() });
        }
        if !admitted.is_empty() {
            st.emit_lobby_changed();
        }
        admitted
    }

    /// Turn people away from the lobby with `reason`; each is told.
    pub(super) fn turn_away(&self, whom: &Whom, reason: EndReason) -> Vec<LobbyOutcome> {
        let mut st = self.state();
        let mut out = Vec::new();
        for participant in st.waiting(whom) {
            if let Some(entry) = st.remove_waiting(participant, reason) {
                out.push(LobbyOutcome { participant, waited: entry.since.elapsed() });
            }
        }
        out
    }

    /// Who waits, oldest first.
    pub fn lobby(&self) -> Vec<LobbyView> {
        self.state().lobby_views()
    }

    /// Whether `participant` is waiting in the lobby.
    pub fn is_waiting(&self, participant: ParticipantId) -> bool {
        self.state().lobby.contains_key(&participant)
    }
}

impl RoomState {
    /// Remove someone from the lobby, telling it why and showing moderators the new lobby.
    pub(super) fn remove_waiting(&mut self, participant: ParticipantId, reason: EndReason) -> Option<LobbyEntry> {
        let entry = self.lobby.remove(&participant)?;
        let left = RoomEvent::MemberLeft { participant, identity: entry.request.identity, reason };
        entry.request.sink.deliver(&Arc::new(left));
        self.emit_lobby_changed();
        Some(entry)
    }

    /// Show one member (who just became able to moderate) the lobby, if anyone waits.
    pub(super) fn show_lobby_to(&mut self, participant: ParticipantId) {
        if self.lobby.is_empty() {
            return;
        }
        let event = Arc::new(RoomEvent::LobbyChanged(self.lobby_views()));
        if let Some(m) = self.members.get(&participant) {
            m.sink.deliver(&event);
        }
    }

    /// Show every member who may moderate the current lobby.
    fn emit_lobby_changed(&mut self) {
        let event = Arc::new(RoomEvent::LobbyChanged(self.lobby_views()));
        for m in self.members.values().filter(|m| m.caps.moderate) {
            m.sink.deliver(&event);
        }
    }

    fn lobby_views(&self) -> Vec<LobbyView> {
        let mut views: Vec<LobbyView> = self
            .lobby
            .iter()
            .map(|(participant, e)| LobbyView {
                participant: *participant,
                identity: e.request.identity,
                raw_id: e.request.raw_id.clone(),
                display_name: e.request.display_name.clone(),
                waiting_since_ms: e.since_ms,
            })
            .collect();
        views.sort_by_key(|v| (v.waiting_since_ms, v.participant));
        views
    }

    /// The waiting participants `whom` names.
    fn waiting(&self, whom: &Whom) -> Vec<ParticipantId> {
        match whom {
            Whom::All => self.lobby.keys().copied().collect(),
            Whom::Participants(ids) => ids.iter().copied().filter(|p| self.lobby.contains_key(p)).collect(),
            Whom::Identities(ids) => {
                self.lobby.iter().filter(|(_, e)| ids.contains(&e.request.identity)).map(|(p, _)| *p).collect()
            }
        }
    }
}

/// The role a meeting gives someone let in: presenters (per `allowedPresenters`, and always the
/// organizer) may share their screen and moderate (mute, remove, admit); attendees may not.
fn meeting_role(record: &MeetingRecord, joiner: &Joiner) -> Role {
    if record.presents(joiner) { Role::Presenter } else { Role::Attendee }
}
