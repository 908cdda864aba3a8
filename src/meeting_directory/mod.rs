//! Teams-style meetings kept in the store. `MeetingDirectory` is what the Meetings REST API
//! manages and what a join into a meeting asks: find the meeting by its join meeting ID or its
//! join link, check a passcode, and decide with the meeting's rules (`meeting_policy`) who skips
//! the lobby and who presents.
//!
//! Changes are returned as values (`update` gives the meeting before and after, `delete` whether
//! it existed), so the caller that holds live meetings can apply them to sessions already in.
//!
//! Times are Unix microseconds. Every method is synchronous (SQLite behind a mutex): callers on
//! async tasks use `spawn_blocking`, as the HTTP handlers do.

use crate::identity::{IdentityId, RawIdError};
use crate::store::{MeetingRow, NewMeeting, Store, StoreError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use std::collections::HashSet;
use std::sync::Arc;

mod record;

pub use record::{
    JoinMeetingId, MeetingChange, MeetingCursor, MeetingId, MeetingLimits, MeetingRecord, MeetingRequest, MeetingUpdate,
};

pub use crate::meeting_policy::{AllowedPresenters, Joiner, LobbyBypassScope, MeetingRole, UnknownValue};
pub use crate::room_directory::Page;

/// The path under the server's public endpoint where join links live (`https://HOST/meet/<token>`).
pub const JOIN_PATH: &str = "meet";

/// A meeting lasts an hour when the request names no end (Graph's default).
pub const DEFAULT_DURATION_US: i64 = 3600 * 1_000_000;

/// Passcode length and alphabet: six characters like Teams passcodes, from letters and digits
/// without the look-alikes `0 O 1 I l` (read aloud and typed by people). 57^6 ≈ 3.4·10^10
/// passcodes (35 bits); the join path limits wrong guesses per address and per meeting.
pub const PASSCODE_LEN: usize = 6;
const PASSCODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";

/// Random bytes in a join link token: 128 bits, so links cannot be guessed.
const LINK_TOKEN_BYTES: usize = 16;

/// Why a Meetings API request was refused. `target()` names the request field at fault, as the
/// API spells it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MeetingDirectoryError {
    #[error("the meeting does not exist")]
    MeetingNotFound,
    #[error("'{raw}' is not a participant this server accepts: {reason}")]
    InvalidParticipant { target: String, raw: String, reason: RawIdError },
    #[error("a meeting may list at most {limit} attendees, not {count}")]
    TooManyAttendees { count: usize, limit: usize },
    #[error("attendee {index} is listed twice")]
    DuplicateAttendee { index: usize },
    #[error("attendee {index} is the organizer, who is not listed among the attendees")]
    OrganizerIsAttendee { index: usize },
    #[error("the subject is longer than {limit} characters")]
    SubjectTooLong { limit: usize },
    #[error("the subject contains control characters")]
    SubjectHasControlCharacters,
    #[error("endDateTime needs a startDateTime")]
    EndWithoutStart,
    #[error("endDateTime must be after startDateTime")]
    EndNotAfterStart,
    #[error("changing the meeting's time names both startDateTime and endDateTime; {missing} is missing")]
    StartAndEndTogether { missing: &'static str },
    #[error("the organizer of a meeting cannot change")]
    OrganizerIsReadOnly,
    #[error("joinMeetingIdSettings cannot change once the meeting exists")]
    JoinSettingsAreReadOnly,
    #[error("the system random generator failed")]
    Random,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MeetingDirectoryError {
    /// The request field the error is about.
    pub fn target(&self) -> Option<String> {
        use MeetingDirectoryError as E;
        match self {
            E::InvalidParticipant { target, .. } => Some(target.clone()),
            E::TooManyAttendees { .. } => Some("participants.attendees".to_owned()),
            E::DuplicateAttendee { index } | E::OrganizerIsAttendee { index } => {
                Some(format!("participants.attendees[{index}]"))
            }
            E::SubjectTooLong { .. } | E::SubjectHasControlCharacters => Some("subject".to_owned()),
            E::EndWithoutStart => Some("startDateTime".to_owned()),
            E::EndNotAfterStart => Some("endDateTime".to_owned()),
            E::StartAndEndTogether { missing } => Some((*missing).to_owned()),
            E::OrganizerIsReadOnly => Some("participants.organizer".to_owned()),
            E::JoinSettingsAreReadOnly => Some("joinMeetingIdSettings.isPasscodeRequired".to_owned()),
            E::MeetingNotFound | E::Random | E::Store(_) => None,
        }
    }
}

/// The meetings of this server, in front of the store it shares with the other directories.
pub struct MeetingDirectory {
    store: Arc<Store>,
    resource_id: String,
    /// `https://HOST/meet/`: a join link is this and a token.
    join_url_base: String,
    limits: MeetingLimits,
}

impl MeetingDirectory {
    /// `endpoint` is the server's public base URL (`https://HOST/`), on which join links are built.
    pub fn new(store: Arc<Store>, resource_id: impl Into<String>, endpoint: &str, limits: MeetingLimits) -> Self {
        let join_url_base = format!("{}/{JOIN_PATH}/", endpoint.trim_end_matches('/'));
        Self { store, resource_id: resource_id.into(), join_url_base, limits }
    }

    pub fn limits(&self) -> MeetingLimits {
        self.limits
    }

    /// Parse a participant's raw ID; only communication users of this server's resource take
    /// part in meetings. `target` is the request field, for the error.
    pub fn parse_participant(&self, raw: &str, target: impl Into<String>) -> Result<IdentityId, MeetingDirectoryError> {
        IdentityId::parse_raw(raw, &self.resource_id).map_err(|reason| MeetingDirectoryError::InvalidParticipant {
            target: target.into(),
            raw: raw.to_owned(),
            reason,
        })
    }

    /// Create a meeting: a fresh ID, a unique 12-digit join meeting ID, an unguessable join
    /// link and, when required, a passcode.
    pub fn create(&self, request: MeetingRequest, now_us: i64) -> Result<MeetingRecord, MeetingDirectoryError> {
        if let Some(subject) = &request.subject {
            self.check_subject(subject)?;
        }
        let (start_us, end_us) = match (request.start_us, request.end_us) {
            (None, None) => (now_us, now_us.saturating_add(DEFAULT_DURATION_US)),
            (Some(start), None) => (start, start.saturating_add(DEFAULT_DURATION_US)),
            (None, Some(_)) => return Err(MeetingDirectoryError::EndWithoutStart),
            (Some(start), Some(end)) => (start, end),
        };
        check_times(start_us, end_us)?;
        self.check_attendees(request.organizer, &request.attendees)?;
        let passcode = request.is_passcode_required.then(new_passcode).transpose()?;
        let link_token = new_link_token()?;
        let join_web_url = format!("{}{link_token}", self.join_url_base);
        let attendees: Vec<_> = request.attendees.iter().map(|(id, role)| (id.0, *role)).collect();
        let row = self.store.create_meeting(&NewMeeting {
            created_at_us: now_us,
            start_us,
            end_us,
            subject: request.subject.as_deref(),
            organizer: request.organizer.0,
            attendees: &attendees,
            lobby_bypass_scope: request.lobby_bypass_scope,
            is_dial_in_bypass_enabled: request.is_dial_in_bypass_enabled,
            allowed_presenters: request.allowed_presenters,
            passcode: passcode.as_deref(),
            link_token: &link_token,
            join_web_url: &join_web_url,
        })?;
        Ok(record(row))
    }

    pub fn get(&self, id: MeetingId) -> Result<Option<MeetingRecord>, StoreError> {
        Ok(self.store.meeting(id.0)?.map(record))
    }

    /// The meeting a person means by a join meeting ID as typed (`123456789012`, or with spaces).
    /// `None` also for text that is not a join meeting ID.
    pub fn by_join_id(&self, join_meeting_id: &str) -> Result<Option<MeetingRecord>, StoreError> {
        let Some(id) = JoinMeetingId::parse(join_meeting_id) else {
            return Ok(None);
        };
        Ok(self.store.meeting_by_join_id(id.get())?.map(record))
    }

    /// The meeting of a join link (`https://HOST/meet/<token>`, on any host, so links keep
    /// working if the public URL changes) or of its bare token. `None` also for text that is
    /// neither.
    pub fn by_link(&self, url_or_token: &str) -> Result<Option<MeetingRecord>, StoreError> {
        let Some(token) = link_token_of(url_or_token) else {
            return Ok(None);
        };
        Ok(self.store.meeting_by_link_token(token)?.map(record))
    }

    /// Whether `given` opens `record` (see `MeetingRecord::passcode_matches`): constant time.
    pub fn check_passcode(record: &MeetingRecord, given: &str) -> bool {
        record.passcode_matches(given)
    }

    /// One page of meetings, newest first, continuing after `after`.
    pub fn list(&self, after: Option<MeetingCursor>) -> Result<Page<MeetingRecord, MeetingCursor>, StoreError> {
        let after = after.map(|c| (c.created_at_us, c.id.0));
        let mut rows = self.store.meetings_page(after, self.limits.page_size + 1)?;
        let next = if rows.len() > self.limits.page_size {
            rows.truncate(self.limits.page_size);
            rows.last().map(|r| MeetingCursor { created_at_us: r.created_at_us, id: MeetingId(r.id) })
        } else {
            None
        };
        Ok(Page { items: rows.into_iter().map(record).collect(), next })
    }

    /// Change what Graph lets a PATCH change: subject, times (both), attendees (the full list),
    /// lobby bypass settings and presenters. Returns the meeting before and after.
    pub fn update(&self, id: MeetingId, update: MeetingUpdate) -> Result<MeetingChange, MeetingDirectoryError> {
        match (update.start_us, update.end_us) {
            (Some(_), None) => return Err(MeetingDirectoryError::StartAndEndTogether { missing: "endDateTime" }),
            (None, Some(_)) => return Err(MeetingDirectoryError::StartAndEndTogether { missing: "startDateTime" }),
            (Some(start), Some(end)) => check_times(start, end)?,
            (None, None) => {}
        }
        if let Some(subject) = &update.subject {
            self.check_subject(subject)?;
        }
        let changed = self.store.update_meeting(id.0, |current| {
            if update.organizer.is_some_and(|o| o.0 != current.organizer) {
                return Err(MeetingDirectoryError::OrganizerIsReadOnly);
            }
            if update.is_passcode_required.is_some_and(|required| required != current.passcode.is_some()) {
                return Err(MeetingDirectoryError::JoinSettingsAreReadOnly);
            }
            let attendees = match &update.attendees {
                None => current.attendees.clone(),
                Some(list) => {
                    self.check_attendees(IdentityId(current.organizer), list)?;
                    list.iter().map(|(id, role)| (id.0, *role)).collect()
                }
            };
            Ok(MeetingRow {
                start_us: update.start_us.unwrap_or(current.start_us),
                end_us: update.end_us.unwrap_or(current.end_us),
                subject: update.subject.clone().or_else(|| current.subject.clone()),
                attendees,
                lobby_bypass_scope: update.lobby_bypass_scope.unwrap_or(current.lobby_bypass_scope),
                is_dial_in_bypass_enabled: update
                    .is_dial_in_bypass_enabled
                    .unwrap_or(current.is_dial_in_bypass_enabled),
                allowed_presenters: update.allowed_presenters.unwrap_or(current.allowed_presenters),
                ..current.clone()
            })
        })?;
        let (old, new) = changed.ok_or(MeetingDirectoryError::MeetingNotFound)?;
        Ok(MeetingChange { old: record(old), new: record(new) })
    }

    /// Delete a meeting; returns whether it existed (a live meeting is the caller's to end).
    pub fn delete(&self, id: MeetingId) -> Result<bool, StoreError> {
        self.store.delete_meeting(id.0)
    }

    fn check_subject(&self, subject: &str) -> Result<(), MeetingDirectoryError> {
        if subject.chars().count() > self.limits.max_subject_chars {
            return Err(MeetingDirectoryError::SubjectTooLong { limit: self.limits.max_subject_chars });
        }
        if subject.chars().any(char::is_control) {
            return Err(MeetingDirectoryError::SubjectHasControlCharacters);
        }
        Ok(())
    }

    fn check_attendees(
        &self,
        organizer: IdentityId,
        attendees: &[(IdentityId, MeetingRole)],
    ) -> Result<(), MeetingDirectoryError> {
        let limit = self.limits.max_attendees;
        if attendees.len() > limit {
            return Err(MeetingDirectoryError::TooManyAttendees { count: attendees.len(), limit });
        }
        let mut seen = HashSet::with_capacity(attendees.len());
        for (index, (id, _)) in attendees.iter().enumerate() {
            if *id == organizer {
                return Err(MeetingDirectoryError::OrganizerIsAttendee { index });
            }
            if !seen.insert(*id) {
                return Err(MeetingDirectoryError::DuplicateAttendee { index });
            }
        }
        Ok(())
    }
}

fn check_times(start_us: i64, end_us: i64) -> Result<(), MeetingDirectoryError> {
    if end_us <= start_us {
        return Err(MeetingDirectoryError::EndNotAfterStart);
    }
    Ok(())
}

fn record(row: MeetingRow) -> MeetingRecord {
    MeetingRecord {
        id: MeetingId(row.id),
        created_at_us: row.created_at_us,
        start_us: row.start_us,
        end_us: row.end_us,
        subject: row.subject,
        organizer: IdentityId(row.organizer),
        attendees: row.attendees.into_iter().map(|(id, role)| (IdentityId(id), role)).collect(),
        lobby_bypass_scope: row.lobby_bypass_scope,
        is_dial_in_bypass_enabled: row.is_dial_in_bypass_enabled,
        allowed_presenters: row.allowed_presenters,
        join_meeting_id: JoinMeetingId(row.join_meeting_id),
        is_passcode_required: row.passcode.is_some(),
        passcode: row.passcode,
        join_web_url: row.join_web_url,
    }
}

/// The token of a join link: the last path segment of an `https://HOST/meet/<token>` URL
/// (query and fragment ignored), or the text itself; `None` unless it has a token's shape.
fn link_token_of(url_or_token: &str) -> Option<&str> {
    let text = url_or_token.trim();
    let token = if text.contains("://") {
        let path = text.split(['?', '#']).next()?.trim_end_matches('/');
        let (prefix, token) = path.rsplit_once('/')?;
        if !prefix.ends_with(&format!("/{JOIN_PATH}")) {
            return None;
        }
        token
    } else {
        text
    };
    let encoded_len = (LINK_TOKEN_BYTES * 8).div_ceil(6);
    let well_formed =
        token.len() == encoded_len && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some(token)
}

/// 128 random bits, base64url (22 characters).
fn new_link_token() -> Result<String, MeetingDirectoryError> {
    let mut bytes = [0u8; LINK_TOKEN_BYTES];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| MeetingDirectoryError::Random)?;
    Ok(B64URL.encode(bytes))
}

/// A passcode of `PASSCODE_LEN` characters drawn uniformly from `PASSCODE_ALPHABET` (rejection
/// sampling: bytes at or above the largest multiple of the alphabet size are skipped, so no
/// character is likelier than another).
fn new_passcode() -> Result<String, MeetingDirectoryError> {
    let n = PASSCODE_ALPHABET.len();
    let accept_below = 256 - 256 % n;
    let mut passcode = String::with_capacity(PASSCODE_LEN);
    while passcode.len() < PASSCODE_LEN {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| MeetingDirectoryError::Random)?;
        for b in bytes.iter().map(|b| usize::from(*b)).filter(|b| *b < accept_below) {
            if passcode.len() < PASSCODE_LEN {
                passcode.push(char::from(PASSCODE_ALPHABET[b % n]));
            }
        }
    }
    Ok(passcode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::organization::OrgStatus;
    use uuid::Uuid;

    const RES: &str = "1b2c3d4e-0000-4000-8000-000000000001";
    const HOUR_US: i64 = 3600 * 1_000_000;
    /// An arbitrary "now": 2026-01-01T00:00:00Z.
    const NOW_US: i64 = 1_767_225_600 * 1_000_000;
    const ENDPOINT: &str = "https://sfu.example.com/";

    fn directory(max_attendees: usize, page_size: usize) -> MeetingDirectory {
        let store = Arc::new(Store::open_in_memory().expect("in-memory db"));
        let limits = MeetingLimits { max_attendees, max_subject_chars: 20, page_size };
        MeetingDirectory::new(store, RES, ENDPOINT, limits)
    }

    fn someone() -> IdentityId {
        IdentityId(Uuid::new_v4())
    }

    #[test]
    fn create_uses_graphs_defaults_and_reads_back() {
        let dir = directory(10, 10);
        let organizer = someone();
        let m = dir.create(MeetingRequest::new(organizer), NOW_US).expect("create");
        assert_eq!((m.created_at_us, m.start_us, m.end_us), (NOW_US, NOW_US, NOW_US + HOUR_US));
        assert_eq!((m.organizer, m.attendees.as_slice(), m.subject.as_deref()), (organizer, &[][..], None));
        assert_eq!(m.lobby_bypass_scope, LobbyBypassScope::Organization);
        assert_eq!(m.allowed_presenters, AllowedPresenters::Everyone);
        assert!(!m.is_passcode_required && m.passcode.is_none() && !m.is_dial_in_bypass_enabled);
        let join_id = m.join_meeting_id.to_string();
        assert!(join_id.len() == 12 && !join_id.starts_with('0'), "{join_id}");
        let token = m.join_web_url.strip_prefix("https://sfu.example.com/meet/").expect("on the endpoint");
        assert_eq!(token.len(), 22, "128 bits in base64url: {token}");
        assert_eq!(dir.get(m.id).expect("get"), Some(m.clone()));
        assert_eq!(MeetingId::parse(&m.id.to_string()), Some(m.id));

        // A start without an end lasts an hour; attendees keep their order and roles.
        let (a, b) = (someone(), someone());
        let request = MeetingRequest {
            subject: Some("Quarterly review".to_owned()),
            start_us: Some(NOW_US + HOUR_US),
            attendees: vec![(b, MeetingRole::Presenter), (a, MeetingRole::Attendee)],
            lobby_bypass_scope: LobbyBypassScope::Invited,
            allowed_presenters: AllowedPresenters::RoleIsPresenter,
            is_passcode_required: true,
            ..MeetingRequest::new(organizer)
        };
        let m = dir.create(request, NOW_US).expect("create");
        assert_eq!((m.start_us, m.end_us), (NOW_US + HOUR_US, NOW_US + 2 * HOUR_US));
        assert_eq!(m.attendees, vec![(b, MeetingRole::Presenter), (a, MeetingRole::Attendee)]);
        let passcode = m.passcode.clone().expect("required, so generated");
        assert!(m.is_passcode_required);
        assert_eq!(passcode.len(), PASSCODE_LEN);
        assert!(passcode.bytes().all(|c| PASSCODE_ALPHABET.contains(&c)), "{passcode}");
        assert_eq!(dir.get(m.id).expect("get"), Some(m));
    }

    #[test]
    fn requests_are_checked_and_errors_name_the_field() {
        let dir = directory(2, 10);
        let (organizer, a) = (someone(), someone());
        let cases: Vec<(MeetingRequest, &str)> = vec![
            (MeetingRequest { end_us: Some(NOW_US), ..MeetingRequest::new(organizer) }, "startDateTime"),
            (
                MeetingRequest { start_us: Some(NOW_US), end_us: Some(NOW_US), ..MeetingRequest::new(organizer) },
                "endDateTime",
            ),
            (MeetingRequest { subject: Some("x".repeat(21)), ..MeetingRequest::new(organizer) }, "subject"),
            (MeetingRequest { subject: Some("a\u{0}b".to_owned()), ..MeetingRequest::new(organizer) }, "subject"),
            (
                MeetingRequest {
                    attendees: vec![
                        (a, MeetingRole::Attendee),
                        (someone(), MeetingRole::Attendee),
                        (someone(), MeetingRole::Attendee),
                    ],
                    ..MeetingRequest::new(organizer)
                },
                "participants.attendees",
            ),
            (
                MeetingRequest {
                    attendees: vec![(a, MeetingRole::Attendee), (a, MeetingRole::Presenter)],
                    ..MeetingRequest::new(organizer)
                },
                "participants.attendees[1]",
            ),
            (
                MeetingRequest {
                    attendees: vec![(organizer, MeetingRole::Attendee)],
                    ..MeetingRequest::new(organizer)
                },
                "participants.attendees[0]",
            ),
        ];
        for (request, target) in cases {
            let e = dir.create(request.clone(), NOW_US).expect_err(target);
            assert_eq!(e.target().as_deref(), Some(target), "{request:?}: {e}");
        }
        // Twenty characters are fine, however many bytes they take.
        let subject = Some("é".repeat(20));
        assert!(dir.create(MeetingRequest { subject, ..MeetingRequest::new(organizer) }, NOW_US).is_ok());
        let e = dir.parse_participant("8:echo123", "participants.organizer.identity.user.id").expect_err("not ours");
        assert_eq!(e.target().as_deref(), Some("participants.organizer.identity.user.id"));
        assert!(e.to_string().contains("8:echo123"), "{e}");
        assert_eq!(dir.parse_participant(&a.raw(RES), "x").expect("ours"), a);
    }

    #[test]
    fn update_changes_what_graph_allows_and_returns_before_and_after() {
        let dir = directory(5, 10);
        let (organizer, a, b) = (someone(), someone(), someone());
        let request = MeetingRequest {
            subject: Some("Standup".to_owned()),
            attendees: vec![(a, MeetingRole::Attendee)],
            is_passcode_required: true,
            ..MeetingRequest::new(organizer)
        };
        let created = dir.create(request, NOW_US).expect("create");

        let update = MeetingUpdate {
            lobby_bypass_scope: Some(LobbyBypassScope::Everyone),
            attendees: Some(vec![(b, MeetingRole::Coorganizer), (a, MeetingRole::Presenter)]),
            start_us: Some(NOW_US + HOUR_US),
            end_us: Some(NOW_US + 3 * HOUR_US),
            organizer: Some(organizer),
            is_passcode_required: Some(true),
            ..MeetingUpdate::default()
        };
        let change = dir.update(created.id, update).expect("update");
        assert_eq!(change.old, created);
        let expected = MeetingRecord {
            lobby_bypass_scope: LobbyBypassScope::Everyone,
            attendees: vec![(b, MeetingRole::Coorganizer), (a, MeetingRole::Presenter)],
            start_us: NOW_US + HOUR_US,
            end_us: NOW_US + 3 * HOUR_US,
            ..created.clone()
        };
        assert_eq!(change.new, expected, "the rest (join ID, passcode, link, subject) is unchanged");
        assert_eq!(dir.get(created.id).expect("get"), Some(expected.clone()));

        let refused = [
            (MeetingUpdate { start_us: Some(NOW_US), ..MeetingUpdate::default() }, "endDateTime"),
            (MeetingUpdate { end_us: Some(NOW_US), ..MeetingUpdate::default() }, "startDateTime"),
            (
                MeetingUpdate { start_us: Some(NOW_US), end_us: Some(NOW_US - 1), ..MeetingUpdate::default() },
                "endDateTime",
            ),
            (MeetingUpdate { organizer: Some(a), ..MeetingUpdate::default() }, "participants.organizer"),
            (
                MeetingUpdate { is_passcode_required: Some(false), ..MeetingUpdate::default() },
                "joinMeetingIdSettings.isPasscodeRequired",
            ),
            (
                MeetingUpdate { attendees: Some(vec![(organizer, MeetingRole::Attendee)]), ..MeetingUpdate::default() },
                "participants.attendees[0]",
            ),
        ];
        for (update, target) in refused {
            let e = dir.update(created.id, update.clone()).expect_err(target);
            assert_eq!(e.target().as_deref(), Some(target), "{update:?}: {e}");
        }
        assert_eq!(dir.get(created.id).expect("get"), Some(expected), "refused updates change nothing");
        let missing = MeetingId(Uuid::new_v4());
        assert!(matches!(dir.update(missing, MeetingUpdate::default()), Err(MeetingDirectoryError::MeetingNotFound)));
        assert!(dir.delete(created.id).expect("delete"));
        assert!(!dir.delete(created.id).expect("delete twice"));
        assert_eq!(dir.get(created.id).expect("get"), None);
    }

    #[test]
    fn meetings_are_found_by_join_id_and_by_link() {
        let dir = directory(5, 10);
        let m = dir.create(MeetingRequest::new(someone()), NOW_US).expect("create");
        let other = dir.create(MeetingRequest::new(someone()), NOW_US).expect("create");
        assert_ne!(m.join_meeting_id, other.join_meeting_id);
        assert_ne!(m.join_web_url, other.join_web_url);

        let digits = m.join_meeting_id.to_string();
        let spaced = format!("{} {} {} {}", &digits[..3], &digits[3..6], &digits[6..9], &digits[9..]);
        for typed in [digits.as_str(), spaced.as_str()] {
            assert_eq!(dir.by_join_id(typed).expect("lookup").map(|r| r.id), Some(m.id), "{typed}");
        }
        for not_an_id in ["", "12345", "012345678901", "1234567890123", "12345678901x", "１２３４５６７８９０１２"]
        {
            assert_eq!(dir.by_join_id(not_an_id).expect("lookup"), None, "{not_an_id}");
        }

        let token = m.join_web_url.rsplit('/').next().expect("token").to_owned();
        let moved_host = format!("https://other.example:8443/meet/{token}");
        let with_query = format!("{}?context=x#y", m.join_web_url);
        for link in [m.join_web_url.as_str(), token.as_str(), moved_host.as_str(), with_query.as_str()] {
            assert_eq!(dir.by_link(link).expect("lookup").map(|r| r.id), Some(m.id), "{link}");
        }
        let wrong_path = format!("https://sfu.example.com/rooms/{token}");
        let shorter = &token[1..];
        for not_a_link in ["", "https://sfu.example.com/meet/", wrong_path.as_str(), shorter, "../../etc/passwd"] {
            assert_eq!(dir.by_link(not_a_link).expect("lookup"), None, "{not_a_link}");
        }
        let unknown = B64URL.encode([7u8; LINK_TOKEN_BYTES]);
        assert_eq!(dir.by_link(&unknown).expect("lookup"), None);
    }

    #[test]
    fn passcodes_are_checked_exactly() {
        let dir = directory(5, 10);
        let request = MeetingRequest { is_passcode_required: true, ..MeetingRequest::new(someone()) };
        let m = dir.create(request, NOW_US).expect("create");
        let passcode = m.passcode.clone().expect("passcode");
        assert!(MeetingDirectory::check_passcode(&m, &passcode));
        assert!(MeetingDirectory::check_passcode(&m, &format!(" {passcode}\n")), "surrounding whitespace is ignored");
        let flipped: String = passcode
            .chars()
            .map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect();
        if flipped != passcode {
            assert!(!MeetingDirectory::check_passcode(&m, &flipped), "case-sensitive");
        }
        for wrong in ["", &passcode[..5], &format!("{passcode}x")] {
            assert!(!MeetingDirectory::check_passcode(&m, wrong), "{wrong:?}");
        }
        let open = dir.create(MeetingRequest::new(someone()), NOW_US).expect("create");
        assert!(MeetingDirectory::check_passcode(&open, ""), "no passcode required");

        // Many passcodes: every character of the alphabet shows up, nothing else does.
        let mut seen = HashSet::new();
        for _ in 0..400 {
            seen.extend(new_passcode().expect("random").bytes());
        }
        assert_eq!(seen.len(), PASSCODE_ALPHABET.len());
    }

    #[test]
    fn joiners_are_described_from_the_record() {
        let dir = directory(5, 10);
        let (organizer, presenter, stranger) = (someone(), someone(), someone());
        let request = MeetingRequest {
            attendees: vec![(presenter, MeetingRole::Presenter)],
            lobby_bypass_scope: LobbyBypassScope::Invited,
            allowed_presenters: AllowedPresenters::RoleIsPresenter,
            ..MeetingRequest::new(organizer)
        };
        let m = dir.create(request, NOW_US).expect("create");
        let j = m.joiner(organizer, OrgStatus::External);
        assert!(j.is_organizer && !j.invited && m.bypasses_lobby(&j) && m.presents(&j));
        let j = m.joiner(presenter, OrgStatus::External);
        assert_eq!((j.invited, j.role), (true, MeetingRole::Presenter));
        assert!(m.bypasses_lobby(&j) && m.presents(&j));
        let j = m.joiner(stranger, OrgStatus::Member);
        assert_eq!((j.is_organizer, j.invited, j.role), (false, false, MeetingRole::Attendee));
        assert!(!m.bypasses_lobby(&j) && !m.presents(&j));
    }

    #[test]
    fn lists_page_through_everything_once() {
        let dir = directory(5, 2);
        for at in [0, 1, 2, 2, 3] {
            dir.create(MeetingRequest::new(someone()), NOW_US + at).expect("create");
        }
        let (mut seen, mut after) = (Vec::new(), None);
        loop {
            let page = dir.list(after).expect("list");
            assert!(page.items.len() <= 2);
            seen.extend(page.items.iter().map(|m| m.id));
            match page.next {
                Some(next) => after = Some(MeetingCursor::from_token(&next.token()).expect("round trip")),
                None => break,
            }
        }
        let unique: HashSet<_> = seen.iter().collect();
        assert_eq!((seen.len(), unique.len()), (5, 5), "every meeting once");
        assert_eq!(MeetingCursor::from_token("x.y"), None);
        assert_eq!(MeetingCursor::from_token("1"), None);
    }
}
