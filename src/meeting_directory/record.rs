//! The typed values of meetings: IDs, the stored record with the facts a join decides with,
//! and what the Meetings API asks to create or change.

use super::{AllowedPresenters, Joiner, LobbyBypassScope, MeetingRole};
use crate::identity::IdentityId;
use crate::organization::OrgStatus;
use std::fmt;
use uuid::Uuid;

/// A meeting ID (Graph's `id`): opaque to clients; here a UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeetingId(pub Uuid);

impl MeetingId {
    /// `None` for anything that is not an ID this server could have handed out.
    pub fn parse(s: &str) -> Option<Self> {
        // Only the hyphenated form this server writes; no braces, URNs or simple hex.
        (s.len() == 36).then(|| Uuid::parse_str(s).ok().map(Self)).flatten()
    }
}

impl fmt::Display for MeetingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A join meeting ID: 12 digits without a leading zero, what people type with a passcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JoinMeetingId(pub(super) i64);

impl JoinMeetingId {
    /// Parse what a person typed: 12 digits, spaces between them allowed (Teams shows the ID as
    /// `123 456 789 012`). `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        if s.len() > 32 {
            return None;
        }
        let digits: String = s.chars().filter(|c| *c != ' ').collect();
        let well_formed = digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if !well_formed {
            return None;
        }
        digits.parse().ok().map(Self)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for JoinMeetingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Bounds on what API callers can make the server hold and send (`[meetings]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeetingLimits {
    /// Most attendees one meeting lists (the organizer not counted).
    pub max_attendees: usize,
    /// Longest subject, in characters.
    pub max_subject_chars: usize,
    /// Meetings per page of a list.
    pub page_size: usize,
}

/// A stored meeting with the typed facts the join path decides with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRecord {
    pub id: MeetingId,
    /// Unix microseconds (Graph `creationDateTime`).
    pub created_at_us: i64,
    /// Unix microseconds (Graph `startDateTime`, `endDateTime`). Informational: Graph meetings
    /// can be joined outside them.
    pub start_us: i64,
    pub end_us: i64,
    pub subject: Option<String>,
    pub organizer: IdentityId,
    /// In the order they were listed; an identity at most once, never the organizer.
    pub attendees: Vec<(IdentityId, MeetingRole)>,
    pub lobby_bypass_scope: LobbyBypassScope,
    /// Stored and returned as Graph does; there is no dial-in here (yet).
    pub is_dial_in_bypass_enabled: bool,
    pub allowed_presenters: AllowedPresenters,
    pub join_meeting_id: JoinMeetingId,
    pub is_passcode_required: bool,
    /// Present exactly when `is_passcode_required`.
    pub passcode: Option<String>,
    /// `https://HOST/meet/<128-bit token>`, built on the public endpoint when the meeting was made.
    pub join_web_url: String,
}

impl MeetingRecord {
    /// The role the meeting lists for `identity`, if it is an attendee.
    pub fn role_of(&self, identity: IdentityId) -> Option<MeetingRole> {
        self.attendees.iter().find(|(id, _)| *id == identity).map(|(_, role)| *role)
    }

    /// `identity` joining this meeting with the token's `org` claim.
    pub fn joiner(&self, identity: IdentityId, org: OrgStatus) -> Joiner {
        let role = self.role_of(identity);
        Joiner {
            identity,
            org,
            is_organizer: identity == self.organizer,
            invited: role.is_some(),
            role: role.unwrap_or_default(),
        }
    }

    /// Whether `joiner` skips the lobby under this meeting's `lobbyBypassSettings.scope`.
    pub fn bypasses_lobby(&self, joiner: &Joiner) -> bool {
        self.lobby_bypass_scope.bypasses(joiner)
    }

    /// Whether `joiner` may present under this meeting's `allowedPresenters`.
    pub fn presents(&self, joiner: &Joiner) -> bool {
        self.allowed_presenters.presents(joiner)
    }

    /// Whether `given` opens this meeting: always when no passcode is required; otherwise when it
    /// equals the passcode (case-sensitively, surrounding whitespace ignored), compared in
    /// constant time.
    pub fn passcode_matches(&self, given: &str) -> bool {
        match &self.passcode {
            None => true,
            Some(passcode) => {
                aws_lc_rs::constant_time::verify_slices_are_equal(given.trim().as_bytes(), passcode.as_bytes()).is_ok()
            }
        }
    }
}

/// A meeting to create. `MeetingRequest::new` gives Graph's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRequest {
    pub subject: Option<String>,
    /// Absent: now. An end without a start is refused (as Graph does).
    pub start_us: Option<i64>,
    /// Absent: an hour after the start.
    pub end_us: Option<i64>,
    pub organizer: IdentityId,
    pub attendees: Vec<(IdentityId, MeetingRole)>,
    pub lobby_bypass_scope: LobbyBypassScope,
    pub is_dial_in_bypass_enabled: bool,
    pub allowed_presenters: AllowedPresenters,
    pub is_passcode_required: bool,
}

impl MeetingRequest {
    /// A meeting of `organizer` with Graph's defaults: starting now for an hour, nobody invited,
    /// lobby bypass `organization`, everyone presents, no passcode.
    pub fn new(organizer: IdentityId) -> Self {
        Self {
            subject: None,
            start_us: None,
            end_us: None,
            organizer,
            attendees: Vec::new(),
            lobby_bypass_scope: LobbyBypassScope::default(),
            is_dial_in_bypass_enabled: false,
            allowed_presenters: AllowedPresenters::default(),
            is_passcode_required: false,
        }
    }
}

/// Changes to a meeting, as Graph's PATCH allows them; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeetingUpdate {
    pub subject: Option<String>,
    /// Graph: moving a meeting names both its start and its end.
    pub start_us: Option<i64>,
    pub end_us: Option<i64>,
    /// The full new list of attendees (Graph: updating attendees names all of them).
    pub attendees: Option<Vec<(IdentityId, MeetingRole)>>,
    pub lobby_bypass_scope: Option<LobbyBypassScope>,
    pub is_dial_in_bypass_enabled: Option<bool>,
    pub allowed_presenters: Option<AllowedPresenters>,
    /// Read-only after creation: accepted only when it is the current organizer (so a client
    /// may send back what it read).
    pub organizer: Option<IdentityId>,
    /// Read-only after creation, likewise.
    pub is_passcode_required: Option<bool>,
}

/// A meeting before and after an update (the live meeting applies the difference, e.g. a wider
/// lobby bypass admits who is waiting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingChange {
    pub old: MeetingRecord,
    pub new: MeetingRecord,
}

/// Where a page of meetings continues: after the meeting created at `created_at_us` with ID
/// `id` (newest first). Its token is URL-safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeetingCursor {
    pub(super) created_at_us: i64,
    pub(super) id: MeetingId,
}

impl MeetingCursor {
    pub fn token(&self) -> String {
        format!("{}.{}", self.created_at_us, self.id)
    }

    /// `None` for a token this server did not make.
    pub fn from_token(token: &str) -> Option<Self> {
        let (created, id) = token.split_once('.')?;
        Some(Self { created_at_us: created.parse().ok()?, id: MeetingId::parse(id)? })
    }
}
