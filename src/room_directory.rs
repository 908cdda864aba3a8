//! ACS rooms: scheduled, invite-only rooms kept in the store. `RoomDirectory` is what the Rooms
//! REST API manages, and what a join into a room asks (`admission`): whether the room exists, the
//! identity is on its participant list, and now is inside its validity window — and with which
//! `Role`.
//!
//! Participant and room changes are returned as values (`ParticipantChanges`, the `bool` of
//! `delete`), so the caller that holds live calls can apply them to sessions already connected.
//!
//! Times are Unix microseconds: ACS keeps sub-second precision, so a time a client sets comes back
//! as it was sent. `admission` takes the milliseconds the signaling clock reads.
//!
//! Every method is synchronous (SQLite behind a mutex): callers on async tasks use
//! `spawn_blocking`, as the HTTP handlers do.

use crate::identity::{IdentityId, RawIdError};
use crate::rooms::Role;
use crate::store::{NewRoom, ParticipantWrite, Store, StoreError};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use crate::store::RoomRecord;

/// How long a room may stay valid, and how far ahead its validity may start: 180 days, as in ACS.
pub const MAX_VALIDITY_US: i64 = 180 * 24 * 3600 * 1_000_000;

/// An ACS room ID: a decimal number without leading zeros, at most 18 digits (ACS hands out
/// 16 to 18; this server hands out 17), so it fits an `i64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AcsRoomId(i64);

impl AcsRoomId {
    /// `None` for anything that is not a room ID this server could have handed out.
    pub fn parse(s: &str) -> Option<Self> {
        let well_formed = (1..=18).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
        if !well_formed {
            return None;
        }
        s.parse().ok().map(Self)
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for AcsRoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Bounds on what API callers can make the server hold and send (`[rooms]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RosterLimits {
    /// Most participants one room lists; also the most one request may name.
    pub max_participants_per_room: usize,
    /// Rooms or participants per page of a list.
    pub page_size: usize,
}

/// A room to create. Unset times default as in ACS: valid from now, for 180 days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomRequest {
    pub valid_from_us: Option<i64>,
    pub valid_until_us: Option<i64>,
    pub pstn_dial_out_enabled: bool,
    /// Later entries for the same identity win.
    pub participants: Vec<(IdentityId, Role)>,
    /// The client's `Repeatability-Request-ID`: repeating a create returns the first room.
    pub repeatability_id: Option<String>,
}

/// Changes to a room's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoomUpdate {
    pub valid_from_us: Option<i64>,
    pub valid_until_us: Option<i64>,
    pub pstn_dial_out_enabled: Option<bool>,
}

/// One page of a list and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// Where a page of rooms continues: after the room created at `created_at_us` with ID `id`
/// (rooms are listed newest first). Its token is URL-safe, so it can go in a `nextLink` as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomCursor {
    created_at_us: i64,
    id: i64,
}

impl RoomCursor {
    pub fn token(&self) -> String {
        format!("{}.{}", self.created_at_us, self.id)
    }

    /// `None` for a token this server did not make.
    pub fn from_token(token: &str) -> Option<Self> {
        let (created, id) = token.split_once('.')?;
        Some(Self { created_at_us: created.parse().ok()?, id: AcsRoomId::parse(id)?.get() })
    }
}

/// What a participants update really changed, for applying it to live calls: every identity
/// that was added or got a different role (with its role now), and every identity that was a
/// participant and is no longer. Setting a role a participant already has, or removing an
/// identity that was not a participant, is not a change. Both lists are sorted by identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParticipantChanges {
    pub changed: Vec<(IdentityId, Role)>,
    pub removed: Vec<IdentityId>,
}

impl ParticipantChanges {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.removed.is_empty()
    }
}

/// Why a Rooms API request was refused. `target()` names the request field at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomDirectoryError {
    #[error("the room does not exist")]
    RoomNotFound,
    #[error("'{raw}' is not a participant this server accepts: {reason}")]
    InvalidParticipant { raw: String, reason: RawIdError },
    #[error("a request may name at most {limit} participants")]
    TooManyInRequest { limit: usize },
    #[error("the room would have {would_hold} participants; at most {limit} are allowed")]
    TooManyInRoom { would_hold: usize, limit: usize },
    #[error("validFrom is more than 180 days in the future")]
    ValidFromTooLate,
    #[error("the time range end (validUntil) is in the past")]
    ValidUntilInPast,
    #[error("the time range is incorrect (validUntil must be after validFrom) or larger than 180 days")]
    InvalidTimeRange,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RoomDirectoryError {
    /// The request field the error is about, as the API spells it.
    pub fn target(&self) -> Option<String> {
        match self {
            RoomDirectoryError::InvalidParticipant { raw, .. } => Some(format!("participants.{raw}")),
            RoomDirectoryError::TooManyInRequest { .. } | RoomDirectoryError::TooManyInRoom { .. } => {
                Some("participants".to_owned())
            }
            RoomDirectoryError::ValidFromTooLate => Some("validFrom".to_owned()),
            RoomDirectoryError::ValidUntilInPast | RoomDirectoryError::InvalidTimeRange => {
                Some("validUntil".to_owned())
            }
            RoomDirectoryError::RoomNotFound | RoomDirectoryError::Store(_) => None,
        }
    }
}

/// Why a join into a room was refused. `reason()` is the metrics label.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomAdmissionError {
    #[error("the room does not exist")]
    RoomNotFound,
    #[error("the identity is not a participant of the room")]
    NotAParticipant,
    #[error("the room is not open yet")]
    NotYetValid,
    #[error("the room has expired")]
    Expired,
    #[error("the room store failed: {0}")]
    Store(#[from] StoreError),
}

impl RoomAdmissionError {
    /// A short stable label for metrics (bounded: one per variant, never a room or identity).
    pub fn reason(&self) -> &'static str {
        match self {
            RoomAdmissionError::RoomNotFound => "room_not_found",
            RoomAdmissionError::NotAParticipant => "not_a_participant",
            RoomAdmissionError::NotYetValid | RoomAdmissionError::Expired => "outside_validity",
            RoomAdmissionError::Store(_) => "store_error",
        }
    }
}

/// The rooms of this server, in front of the store it shares with the identity directory.
pub struct RoomDirectory {
    store: Arc<Store>,
    resource_id: String,
    limits: RosterLimits,
}

impl RoomDirectory {
    pub fn new(store: Arc<Store>, resource_id: impl Into<String>, limits: RosterLimits) -> Self {
        Self { store, resource_id: resource_id.into(), limits }
    }

    pub fn limits(&self) -> RosterLimits {
        self.limits
    }

    /// Parse participant entries as a request names them (raw ID, role or `None`), checking
    /// their number first so an oversized request costs no parsing. Only communication users of
    /// this server's resource can be participants.
    pub fn parse_participants<R>(
        &self,
        entries: impl ExactSizeIterator<Item = (String, R)>,
    ) -> Result<Vec<(IdentityId, R)>, RoomDirectoryError> {
        if entries.len() > self.limits.max_participants_per_room {
            return Err(RoomDirectoryError::TooManyInRequest { limit: self.limits.max_participants_per_room });
        }
        entries
            .map(|(raw, role)| match IdentityId::parse_raw(&raw, &self.resource_id) {
                Ok(id) => Ok((id, role)),
                Err(reason) => Err(RoomDirectoryError::InvalidParticipant { raw, reason }),
            })
            .collect()
    }

    /// Create a room with its first participants. Returns the room and whether it is new (a
    /// repeated request ID returns the room the first request made).
    pub fn create(&self, request: RoomRequest, now_us: i64) -> Result<(RoomRecord, bool), RoomDirectoryError> {
        let valid_from_us = request.valid_from_us.unwrap_or(now_us);
        let valid_until_us = request.valid_until_us.unwrap_or(valid_from_us.saturating_add(MAX_VALIDITY_US));
        check_validity(valid_from_us, valid_until_us, now_us)?;
        let participants: BTreeMap<IdentityId, Role> = request.participants.into_iter().collect();
        if participants.len() > self.limits.max_participants_per_room {
            return Err(RoomDirectoryError::TooManyInRequest { limit: self.limits.max_participants_per_room });
        }
        let participants: Vec<_> = participants.into_iter().map(|(id, role)| (id.0, role)).collect();
        Ok(self.store.create_room(&NewRoom {
            created_at_us: now_us,
            valid_from_us,
            valid_until_us,
            pstn_dial_out_enabled: request.pstn_dial_out_enabled,
            participants: &participants,
            repeatability_id: request.repeatability_id.as_deref(),
        })?)
    }

    pub fn get(&self, id: AcsRoomId) -> Result<Option<RoomRecord>, StoreError> {
        self.store.room(id.get())
    }

    /// One page of rooms, newest first, continuing after `after`.
    pub fn list(&self, after: Option<RoomCursor>) -> Result<Page<RoomRecord, RoomCursor>, StoreError> {
        let mut items = self.store.rooms_page(after.map(|c| (c.created_at_us, c.id)), self.limits.page_size + 1)?;
        let next = if items.len() > self.limits.page_size {
            items.truncate(self.limits.page_size);
            items.last().map(|r| RoomCursor { created_at_us: r.created_at_us, id: r.id })
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Change a room's settings. Validity is checked (as at creation) only when the request
    /// changes it, so a room whose validity has passed can still have its other settings set.
    pub fn update(&self, id: AcsRoomId, update: RoomUpdate, now_us: i64) -> Result<RoomRecord, RoomDirectoryError> {
        let updated = self.store.update_room(id.get(), |current| {
            let next = RoomRecord {
                valid_from_us: update.valid_from_us.unwrap_or(current.valid_from_us),
                valid_until_us: update.valid_until_us.unwrap_or(current.valid_until_us),
                pstn_dial_out_enabled: update.pstn_dial_out_enabled.unwrap_or(current.pstn_dial_out_enabled),
                ..*current
            };
            if update.valid_from_us.is_some() || update.valid_until_us.is_some() {
                check_validity(next.valid_from_us, next.valid_until_us, now_us)?;
            }
            Ok::<_, RoomDirectoryError>(next)
        })?;
        updated.ok_or(RoomDirectoryError::RoomNotFound)
    }

    /// Delete a room and its participant list; returns whether it existed (live calls in it are
    /// the caller's to end).
    pub fn delete(&self, id: AcsRoomId) -> Result<bool, StoreError> {
        self.store.delete_room(id.get())
    }

    /// One page of a room's participants in identity order, continuing after `after`.
    pub fn participants(
        &self,
        id: AcsRoomId,
        after: Option<IdentityId>,
    ) -> Result<Page<(IdentityId, Role), IdentityId>, RoomDirectoryError> {
        let rows = self
            .store
            .participants_page(id.get(), after.map(|a| a.0), self.limits.page_size + 1)?
            .ok_or(RoomDirectoryError::RoomNotFound)?;
        let mut items: Vec<_> = rows.into_iter().map(|(id, role)| (IdentityId(id), role)).collect();
        let next = if items.len() > self.limits.page_size {
            items.truncate(self.limits.page_size);
            items.last().map(|(id, _)| *id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Add participants, change their roles (`Some(role)`) or remove them (`None`), all or
    /// nothing; later entries for the same identity win. Returns what really changed.
    pub fn update_participants(
        &self,
        id: AcsRoomId,
        patch: impl IntoIterator<Item = (IdentityId, Option<Role>)>,
    ) -> Result<ParticipantChanges, RoomDirectoryError> {
        let patch: BTreeMap<IdentityId, Option<Role>> = patch.into_iter().collect();
        let limit = self.limits.max_participants_per_room;
        if patch.len() > limit {
            return Err(RoomDirectoryError::TooManyInRequest { limit });
        }
        let upserts: Vec<_> = patch.iter().filter_map(|(id, role)| role.map(|r| (id.0, r))).collect();
        let removals: Vec<_> = patch.iter().filter(|(_, role)| role.is_none()).map(|(id, _)| id.0).collect();
        match self.store.write_participants(id.get(), &upserts, &removals, limit)? {
            ParticipantWrite::NoSuchRoom => Err(RoomDirectoryError::RoomNotFound),
            ParticipantWrite::OverLimit { would_hold } => Err(RoomDirectoryError::TooManyInRoom { would_hold, limit }),
            ParticipantWrite::Written { changed, removed } => Ok(ParticipantChanges {
                changed: changed.into_iter().map(|(id, role)| (IdentityId(id), role)).collect(),
                removed: removed.into_iter().map(IdentityId).collect(),
            }),
        }
    }

    /// May `identity` join room `room_id` at `now_ms` (Unix milliseconds), and as what? A
    /// stranger learns only that it is not a participant, not when the room is open.
    pub fn admission(&self, room_id: &str, identity: IdentityId, now_ms: i64) -> Result<Role, RoomAdmissionError> {
        let id = AcsRoomId::parse(room_id).ok_or(RoomAdmissionError::RoomNotFound)?;
        let (room, role) = self.store.room_admission(id.get(), identity.0)?.ok_or(RoomAdmissionError::RoomNotFound)?;
        let role = role.ok_or(RoomAdmissionError::NotAParticipant)?;
        let now_us = now_ms.saturating_mul(1000);
        if now_us < room.valid_from_us {
            return Err(RoomAdmissionError::NotYetValid);
        }
        if now_us >= room.valid_until_us {
            return Err(RoomAdmissionError::Expired);
        }
        Ok(role)
    }
}

/// The ACS rules for a validity window, in the order ACS checks them.
fn check_validity(valid_from_us: i64, valid_until_us: i64, now_us: i64) -> Result<(), RoomDirectoryError> {
    if valid_from_us > now_us.saturating_add(MAX_VALIDITY_US) {
        return Err(RoomDirectoryError::ValidFromTooLate);
    }
    if valid_until_us <= now_us {
        return Err(RoomDirectoryError::ValidUntilInPast);
    }
    if valid_until_us <= valid_from_us || valid_until_us.saturating_sub(valid_from_us) > MAX_VALIDITY_US {
        return Err(RoomDirectoryError::InvalidTimeRange);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    const RES: &str = "1b2c3d4e-0000-4000-8000-000000000001";
    const HOUR_US: i64 = 3600 * 1_000_000;
    const DAY_US: i64 = 24 * HOUR_US;
    /// An arbitrary "now": 2026-01-01T00:00:00Z.
    const NOW_US: i64 = 1_767_225_600 * 1_000_000;

    fn directory(max_participants_per_room: usize, page_size: usize) -> RoomDirectory {
        let store = Arc::new(Store::open_in_memory().expect("in-memory db"));
        RoomDirectory::new(store, RES, RosterLimits { max_participants_per_room, page_size })
    }

    fn someone() -> IdentityId {
        IdentityId(Uuid::new_v4())
    }

    fn room_id(r: &RoomRecord) -> AcsRoomId {
        AcsRoomId::parse(&r.id.to_string()).expect("the store hands out valid IDs")
    }

    #[test]
    fn room_ids_are_positive_decimals_of_at_most_18_digits() {
        assert_eq!(AcsRoomId::parse("99470916612704248").map(AcsRoomId::get), Some(99_470_916_612_704_248));
        assert_eq!(AcsRoomId::parse("999999999999999999").map(AcsRoomId::get), Some(999_999_999_999_999_999));
        for bad in ["", "0", "0123", "1234567890123456789", "12a", "-5", "+5", " 5", "invalid_id"] {
            assert_eq!(AcsRoomId::parse(bad), None, "{bad:?}");
        }
        let cursor = RoomCursor { created_at_us: NOW_US, id: 12_345_678_901_234_567 };
        assert_eq!(RoomCursor::from_token(&cursor.token()), Some(cursor));
        assert_eq!(RoomCursor::from_token("x.1"), None);
        assert_eq!(RoomCursor::from_token("1"), None);
    }

    #[test]
    fn create_defaults_to_180_days_from_now_and_checks_the_window() {
        let dir = directory(10, 10);
        let (room, created) = dir.create(RoomRequest::default(), NOW_US).expect("create");
        assert!(created);
        assert_eq!((room.created_at_us, room.valid_from_us), (NOW_US, NOW_US));
        assert_eq!(room.valid_until_us, NOW_US + 180 * DAY_US);
        assert!(!room.pstn_dial_out_enabled);
        assert_eq!(dir.get(room_id(&room)).expect("get"), Some(room));

        let later = RoomRequest { valid_from_us: Some(NOW_US + DAY_US), ..RoomRequest::default() };
        let (room, _) = dir.create(later, NOW_US).expect("create");
        assert_eq!(room.valid_until_us, NOW_US + 181 * DAY_US, "the default runs 180 days from validFrom");

        let cases = [
            (Some(NOW_US + 181 * DAY_US), None, "validFrom"),
            (None, Some(NOW_US - 1), "validUntil"),
            (None, Some(NOW_US + 181 * DAY_US), "validUntil"),
            (Some(NOW_US + 2 * DAY_US), Some(NOW_US + DAY_US), "validUntil"),
            (Some(NOW_US + DAY_US), Some(NOW_US + DAY_US), "validUntil"),
        ];
        for (from, until, target) in cases {
            let request = RoomRequest { valid_from_us: from, valid_until_us: until, ..RoomRequest::default() };
            let e = dir.create(request, NOW_US).expect_err("refused");
            assert_eq!(e.target().as_deref(), Some(target), "{from:?} {until:?}: {e}");
        }
        let exactly_180 = RoomRequest { valid_until_us: Some(NOW_US + 180 * DAY_US), ..RoomRequest::default() };
        assert!(dir.create(exactly_180, NOW_US).is_ok(), "180 days is allowed");
    }

    #[test]
    fn update_changes_only_what_it_names_and_rechecks_validity() {
        let dir = directory(10, 10);
        let (room, _) = dir.create(RoomRequest::default(), NOW_US).expect("create");
        let id = room_id(&room);
        let update = RoomUpdate { pstn_dial_out_enabled: Some(true), ..RoomUpdate::default() };
        let updated = dir.update(id, update, NOW_US).expect("update");
        assert_eq!(updated, RoomRecord { pstn_dial_out_enabled: true, ..room });
        let update = RoomUpdate { valid_until_us: Some(NOW_US + HOUR_US), ..RoomUpdate::default() };
        let updated = dir.update(id, update, NOW_US).expect("update");
        assert_eq!((updated.valid_from_us, updated.valid_until_us), (NOW_US, NOW_US + HOUR_US));
        let update = RoomUpdate { valid_from_us: Some(NOW_US + 2 * HOUR_US), ..RoomUpdate::default() };
        let e = dir.update(id, update, NOW_US).expect_err("from after until");
        assert!(matches!(e, RoomDirectoryError::InvalidTimeRange), "{e}");
        assert_eq!(dir.get(id).expect("get"), Some(updated), "a refused update changes nothing");
        // Once the room has expired, its other settings can still change.
        let later = NOW_US + 2 * HOUR_US;
        let update = RoomUpdate { pstn_dial_out_enabled: Some(false), ..RoomUpdate::default() };
        assert!(dir.update(id, update, later).is_ok());
        let missing = AcsRoomId::parse("12345678901234567").expect("well formed");
        assert!(matches!(dir.update(missing, update, NOW_US), Err(RoomDirectoryError::RoomNotFound)));
    }

    #[test]
    fn participant_updates_return_only_real_changes() {
        let dir = directory(10, 10);
        let (a, b, c) = (someone(), someone(), someone());
        let request =
            RoomRequest { participants: vec![(a, Role::Presenter), (b, Role::Attendee)], ..Default::default() };
        let (room, _) = dir.create(request, NOW_US).expect("create");
        let id = room_id(&room);

        // a keeps its role (no change), b becomes a consumer, c is added, and an identity that
        // is not a participant is "removed" (no change).
        let changes = dir
            .update_participants(
                id,
                [
                    (a, Some(Role::Presenter)),
                    (b, Some(Role::Consumer)),
                    (c, Some(Role::Collaborator)),
                    (someone(), None),
                ],
            )
            .expect("update");
        let mut expected = vec![(b, Role::Consumer), (c, Role::Collaborator)];
        expected.sort_by_key(|(id, _)| *id);
        assert_eq!(changes, ParticipantChanges { changed: expected, removed: vec![] });

        let changes = dir.update_participants(id, [(a, None), (b, Some(Role::Consumer))]).expect("remove a");
        assert_eq!(changes, ParticipantChanges { changed: vec![], removed: vec![a] });
        assert!(dir.update_participants(id, [(a, None)]).expect("again").is_empty(), "removing twice: no change");

        let page = dir.participants(id, None).expect("list");
        let mut listed = vec![(b, Role::Consumer), (c, Role::Collaborator)];
        listed.sort_by_key(|(id, _)| *id);
        assert_eq!(page, Page { items: listed, next: None });
    }

    #[test]
    fn limits_bound_requests_and_rooms() {
        let dir = directory(3, 10);
        let four: Vec<_> = (0..4).map(|_| (someone(), Role::Attendee)).collect();
        let request = RoomRequest { participants: four.clone(), ..RoomRequest::default() };
        assert!(matches!(dir.create(request, NOW_US), Err(RoomDirectoryError::TooManyInRequest { limit: 3 })));
        let (room, _) = dir.create(RoomRequest::default(), NOW_US).expect("create");
        let id = room_id(&room);
        let patch = four[..3].iter().map(|(id, role)| (*id, Some(*role)));
        assert_eq!(dir.update_participants(id, patch).expect("three fit").changed.len(), 3);
        let e = dir.update_participants(id, [(four[3].0, Some(Role::Attendee))]).expect_err("a fourth");
        assert!(matches!(e, RoomDirectoryError::TooManyInRoom { would_hold: 4, limit: 3 }), "{e}");
        // Removing one and adding one in the same request fits.
        let swap = [(four[0].0, None), (four[3].0, Some(Role::Attendee))];
        let changes = dir.update_participants(id, swap).expect("swap");
        assert_eq!((changes.changed.len(), changes.removed), (1, vec![four[0].0]));

        let raw: Vec<_> = (0..4).map(|_| (someone().raw(RES), ())).collect();
        assert!(matches!(dir.parse_participants(raw.into_iter()), Err(RoomDirectoryError::TooManyInRequest { .. })));
    }

    #[test]
    fn only_users_of_this_resource_can_be_participants() {
        let dir = directory(10, 10);
        let alice = someone();
        let parsed = dir.parse_participants([(alice.raw(RES), Role::Presenter)].into_iter()).expect("ours");
        assert_eq!(parsed, vec![(alice, Role::Presenter)]);
        let foreign = format!("8:acs:other_{}", alice.0);
        for raw in [foreign.as_str(), "8:echo123", "4:+14255550123", "not an id"] {
            let e = dir.parse_participants([(raw.to_owned(), ())].into_iter()).expect_err(raw);
            assert_eq!(e.target(), Some(format!("participants.{raw}")));
            assert!(e.to_string().contains(raw), "the message names the participant: {e}");
        }
    }

    #[test]
    fn lists_page_through_everything_once() {
        let dir = directory(10, 2);
        let mut created = Vec::new();
        // The last two rooms share a creation time: the cursor must still not skip or repeat one.
        for at in [0, 1, 2, 3, 3] {
            created.push(dir.create(RoomRequest::default(), NOW_US + at).expect("create").0.id);
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = dir.list(after).expect("list");
            assert!(page.items.len() <= 2);
            seen.extend(page.items.iter().map(|r| r.id));
            match page.next {
                Some(next) => after = Some(RoomCursor::from_token(&next.token()).expect("round trip")),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5);
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 5, "no room twice: {seen:?}");
        assert_eq!(seen.last(), created.first(), "newest first, so the first created comes last");

        let (room, _) = dir.create(RoomRequest::default(), NOW_US).expect("create");
        let patch: Vec<_> = (0..3).map(|_| (someone(), Some(Role::Attendee))).collect();
        dir.update_participants(room_id(&room), patch).expect("add");
        let first = dir.participants(room_id(&room), None).expect("page 1");
        assert_eq!(first.items.len(), 2);
        let second = dir.participants(room_id(&room), first.next).expect("page 2");
        assert_eq!((second.items.len(), second.next), (1, None));
        assert!(first.items[1].0 < second.items[0].0, "identity order, no overlap");
    }

    #[test]
    fn admission_checks_room_participant_and_window() {
        let dir = directory(10, 10);
        let (alice, bob) = (someone(), someone());
        let request = RoomRequest {
            valid_from_us: Some(NOW_US + HOUR_US),
            valid_until_us: Some(NOW_US + 2 * HOUR_US),
            participants: vec![(alice, Role::Consumer)],
            ..RoomRequest::default()
        };
        let (room, _) = dir.create(request, NOW_US).expect("create");
        let id = room.id.to_string();
        let at = |us: i64| us / 1000;

        let reason = |r: Result<Role, RoomAdmissionError>| r.map_err(|e| e.reason());
        assert_eq!(reason(dir.admission(&id, alice, at(NOW_US + HOUR_US))), Ok(Role::Consumer));
        assert_eq!(reason(dir.admission(&id, alice, at(NOW_US + 2 * HOUR_US - 1000))), Ok(Role::Consumer));
        assert!(matches!(dir.admission(&id, alice, at(NOW_US)), Err(RoomAdmissionError::NotYetValid)));
        assert!(matches!(dir.admission(&id, alice, at(NOW_US + 2 * HOUR_US)), Err(RoomAdmissionError::Expired)));
        assert_eq!(reason(dir.admission(&id, alice, at(NOW_US))), Err("outside_validity"));
        assert_eq!(reason(dir.admission(&id, bob, at(NOW_US + HOUR_US))), Err("not_a_participant"));
        assert_eq!(reason(dir.admission(&id, bob, at(NOW_US))), Err("not_a_participant"), "no schedule for strangers");
        assert_eq!(reason(dir.admission("12345678901234567", alice, at(NOW_US))), Err("room_not_found"));
        assert_eq!(reason(dir.admission("not-a-room", alice, at(NOW_US))), Err("room_not_found"));

        // A role change shows at the next join; deletion ends admission.
        let changes = dir.update_participants(room_id(&room), [(alice, Some(Role::Presenter))]).expect("promote");
        assert_eq!(changes.changed, vec![(alice, Role::Presenter)]);
        assert_eq!(reason(dir.admission(&id, alice, at(NOW_US + HOUR_US))), Ok(Role::Presenter));
        assert!(dir.delete(room_id(&room)).expect("delete"));
        assert!(!dir.delete(room_id(&room)).expect("delete twice"));
        assert_eq!(reason(dir.admission(&id, alice, at(NOW_US + HOUR_US))), Err("room_not_found"));
    }
}
