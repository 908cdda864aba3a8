//! The admission set of a media worker: for each session on the worker, the room it is in and the
//! capabilities its role gives it there. Every publish binding and subscription the worker creates
//! is checked against it, and narrowing a session's admission prunes what it no longer may have,
//! so a role change or a removal is enforced by the media plane itself, not only by signaling.

use crate::media::ids::{RoomId, SessionId};
use crate::rooms::{Capabilities, TrackSource};
use std::collections::HashMap;

/// What one session may do, and where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub room: RoomId,
    pub caps: Capabilities,
    /// The member's role version in the room when these capabilities were decided.
    pub version: u64,
}

/// Why the worker refused to create a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("the session is not admitted to this room on its media worker")]
    NotAdmitted,
    #[error("the session's role does not allow publishing this source")]
    SourceNotAllowed,
    #[error("the session's role does not allow receiving media")]
    ReceiveNotAllowed,
    #[error("the session's connection is gone")]
    NoSession,
}

/// Sessions admitted on one worker.
#[derive(Debug, Default)]
pub struct AdmissionSet {
    by_session: HashMap<SessionId, Admission>,
}

impl AdmissionSet {
    /// Admit `session` to `room` with `caps` decided at role `version`. An admission for the same
    /// room decided at an older version than the one held is stale (two updates raced on their
    /// way here) and is ignored; returns whether it was applied.
    pub fn admit(&mut self, session: SessionId, room: RoomId, caps: Capabilities, version: u64) -> bool {
        if let Some(held) = self.by_session.get(&session)
            && held.room == room
            && held.version > version
        {
            return false;
        }
        self.by_session.insert(session, Admission { room, caps, version });
        true
    }

    /// Forget a session's admission (it left its room).
    pub fn dismiss(&mut self, session: SessionId) -> Option<Admission> {
        self.by_session.remove(&session)
    }

    pub fn get(&self, session: SessionId) -> Option<Admission> {
        self.by_session.get(&session).copied()
    }

    pub fn len(&self) -> usize {
        self.by_session.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_session.is_empty()
    }

    /// May `session` publish a track of `source` into `room`?
    pub fn check_publish(&self, session: SessionId, room: RoomId, source: TrackSource) -> Result<(), Refusal> {
        match self.get(session) {
            Some(a) if a.room == room && a.caps.may_publish(source) => Ok(()),
            Some(a) if a.room == room => Err(Refusal::SourceNotAllowed),
            _ => Err(Refusal::NotAdmitted),
        }
    }

    /// May `session` receive media of `room`?
    pub fn check_receive(&self, session: SessionId, room: RoomId) -> Result<(), Refusal> {
        match self.get(session) {
            Some(a) if a.room == room && a.caps.receive => Ok(()),
            Some(a) if a.room == room => Err(Refusal::ReceiveNotAllowed),
            _ => Err(Refusal::NotAdmitted),
        }
    }

    /// Whether a binding of `session` in `room` for `source` (`None`: a subscription) may stay.
    pub fn allows(&self, session: SessionId, room: RoomId, source: Option<TrackSource>) -> bool {
        match source {
            Some(s) => self.check_publish(session, room, s).is_ok(),
            None => self.check_receive(session, room).is_ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::Role;

    #[test]
    fn checks_follow_the_room_and_the_role() {
        let mut set = AdmissionSet::default();
        let (s, room, other) = (SessionId(1), RoomId(10), RoomId(11));
        assert_eq!(set.check_publish(s, room, TrackSource::Camera), Err(Refusal::NotAdmitted));
        assert!(set.admit(s, room, Role::Attendee.capabilities(), 0));
        assert!(set.check_publish(s, room, TrackSource::Camera).is_ok());
        assert_eq!(set.check_publish(s, room, TrackSource::Screen), Err(Refusal::SourceNotAllowed));
        assert_eq!(set.check_publish(s, other, TrackSource::Camera), Err(Refusal::NotAdmitted), "another room");
        assert!(set.check_receive(s, room).is_ok());
        assert!(set.admit(s, room, Role::Consumer.capabilities(), 2));
        assert!(!set.admit(s, room, Role::Presenter.capabilities(), 1), "a stale admission is ignored");
        assert!(!set.allows(s, room, Some(TrackSource::Microphone)));
        assert!(set.allows(s, room, None));
        assert!(set.admit(s, room, Capabilities::NONE, 3));
        assert_eq!(set.check_receive(s, room), Err(Refusal::ReceiveNotAllowed));
        assert!(set.dismiss(s).is_some());
        assert!(set.is_empty());
    }
}
