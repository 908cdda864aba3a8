//! Meetings in the store: their settings and attendees, found by ID, join meeting ID or link.

use super::{Store, StoreError};
use crate::meeting_policy::{AllowedPresenters, LobbyBypassScope, MeetingRole};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

/// One stored meeting. The meeting directory turns it into a `MeetingRecord`; the store keeps
/// plain UUIDs and numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeetingRow {
    pub id: Uuid,
    /// Unix microseconds, like the other times here.
    pub created_at_us: i64,
    pub start_us: i64,
    pub end_us: i64,
    pub subject: Option<String>,
    pub organizer: Uuid,
    /// In the order they were listed.
    pub attendees: Vec<(Uuid, MeetingRole)>,
    pub lobby_bypass_scope: LobbyBypassScope,
    pub is_dial_in_bypass_enabled: bool,
    pub allowed_presenters: AllowedPresenters,
    /// 12 digits, unique among meetings.
    pub join_meeting_id: i64,
    /// Present exactly when a passcode is required.
    pub passcode: Option<String>,
    /// The random part of `join_web_url`, unique among meetings.
    pub link_token: String,
    pub join_web_url: String,
}

/// A meeting to insert. The store picks its ID and its join meeting ID.
#[derive(Debug, Clone, Copy)]
pub struct NewMeeting<'a> {
    pub created_at_us: i64,
    pub start_us: i64,
    pub end_us: i64,
    pub subject: Option<&'a str>,
    pub organizer: Uuid,
    pub attendees: &'a [(Uuid, MeetingRole)],
    pub lobby_bypass_scope: LobbyBypassScope,
    pub is_dial_in_bypass_enabled: bool,
    pub allowed_presenters: AllowedPresenters,
    pub passcode: Option<&'a str>,
    pub link_token: &'a str,
    pub join_web_url: &'a str,
}

/// Meetings: create, read (by ID, join meeting ID or link token), list, update and delete, each
/// in one transaction under the connection lock.
impl Store {
    /// Insert a meeting and its attendees under a fresh random ID and a fresh unique 12-digit
    /// join meeting ID.
    pub fn create_meeting(&self, m: &NewMeeting<'_>) -> Result<MeetingRow, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let id = Uuid::new_v4();
        let mut join_meeting_id = random_join_meeting_id();
        while tx
            .query_row("SELECT 1 FROM meetings WHERE join_meeting_id = ?1", params![join_meeting_id], |_| Ok(()))
            .optional()?
            .is_some()
        {
            join_meeting_id = random_join_meeting_id();
        }
        tx.execute(
            "INSERT INTO meetings (id, created_at_us, start_us, end_us, subject, organizer, lobby_bypass_scope,
                 dial_in_bypass, allowed_presenters, join_meeting_id, passcode, link_token, join_web_url)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                id.to_string(),
                m.created_at_us,
                m.start_us,
                m.end_us,
                m.subject,
                m.organizer.to_string(),
                m.lobby_bypass_scope.as_str(),
                m.is_dial_in_bypass_enabled,
                m.allowed_presenters.as_str(),
                join_meeting_id,
                m.passcode,
                m.link_token,
                m.join_web_url,
            ],
        )?;
        insert_attendees(&tx, id, m.attendees)?;
        let row = query_meeting(&tx, MeetingKey::Id(id))?
            .ok_or_else(|| StoreError::Corrupt("a meeting inserted in this transaction is missing".to_owned()))?;
        tx.commit()?;
        Ok(row)
    }

    pub fn meeting(&self, id: Uuid) -> Result<Option<MeetingRow>, StoreError> {
        query_meeting(&*self.conn()?, MeetingKey::Id(id))
    }

    pub fn meeting_by_join_id(&self, join_meeting_id: i64) -> Result<Option<MeetingRow>, StoreError> {
        query_meeting(&*self.conn()?, MeetingKey::JoinMeetingId(join_meeting_id))
    }

    pub fn meeting_by_link_token(&self, token: &str) -> Result<Option<MeetingRow>, StoreError> {
        query_meeting(&*self.conn()?, MeetingKey::LinkToken(token))
    }

    /// Up to `limit` meetings, newest first, starting after the meeting with the given
    /// `(created_at_us, id)` (the last one of the previous page).
    pub fn meetings_page(&self, after: Option<(i64, Uuid)>, limit: usize) -> Result<Vec<MeetingRow>, StoreError> {
        let conn = self.conn()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ids: Vec<String> = match after {
            None => conn
                .prepare_cached("SELECT id FROM meetings ORDER BY created_at_us DESC, id DESC LIMIT ?1")?
                .query_map(params![limit], |r| r.get(0))?
                .collect::<Result<_, _>>()?,
            Some((created_at_us, id)) => conn
                .prepare_cached(
                    "SELECT id FROM meetings WHERE (created_at_us, id) < (?1, ?2)
                     ORDER BY created_at_us DESC, id DESC LIMIT ?3",
                )?
                .query_map(params![created_at_us, id.to_string(), limit], |r| r.get(0))?
                .collect::<Result<_, _>>()?,
        };
        let mut rows = Vec::with_capacity(ids.len());
        for id in ids {
            let id = parse_uuid(&id, "meeting ID")?;
            // Read under the same lock as the IDs: no meeting can vanish in between.
            rows.extend(query_meeting(&conn, MeetingKey::Id(id))?);
        }
        Ok(rows)
    }

    /// Read a meeting, let `change` compute its new state (or refuse), and write that, in one
    /// transaction. Only the settings a meeting may change are written (times, subject, lobby
    /// bypass, presenters, attendees); the rest of what `change` returns is ignored. Returns the
    /// meeting before and after; `Ok(None)`: no such meeting.
    pub fn update_meeting<E: From<StoreError>>(
        &self,
        id: Uuid,
        change: impl FnOnce(&MeetingRow) -> Result<MeetingRow, E>,
    ) -> Result<Option<(MeetingRow, MeetingRow)>, E> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction().map_err(StoreError::from)?;
        let Some(current) = query_meeting(&tx, MeetingKey::Id(id))? else {
            return Ok(None);
        };
        let next = change(&current)?;
        let write = || -> Result<MeetingRow, StoreError> {
            tx.execute(
                "UPDATE meetings SET start_us = ?2, end_us = ?3, subject = ?4, lobby_bypass_scope = ?5,
                     dial_in_bypass = ?6, allowed_presenters = ?7 WHERE id = ?1",
                params![
                    id.to_string(),
                    next.start_us,
                    next.end_us,
                    next.subject,
                    next.lobby_bypass_scope.as_str(),
                    next.is_dial_in_bypass_enabled,
                    next.allowed_presenters.as_str(),
                ],
            )?;
            if next.attendees != current.attendees {
                tx.execute("DELETE FROM meeting_attendees WHERE meeting_id = ?1", params![id.to_string()])?;
                insert_attendees(&tx, id, &next.attendees)?;
            }
            query_meeting(&tx, MeetingKey::Id(id))?
                .ok_or_else(|| StoreError::Corrupt("a meeting updated in this transaction is missing".to_owned()))
        };
        let updated = write()?;
        tx.commit().map_err(StoreError::from)?;
        Ok(Some((current, updated)))
    }

    /// Delete a meeting and its attendees; returns whether it existed.
    pub fn delete_meeting(&self, id: Uuid) -> Result<bool, StoreError> {
        Ok(self.conn()?.execute("DELETE FROM meetings WHERE id = ?1", params![id.to_string()])? > 0)
    }
}

/// How a meeting is looked up (each is a unique column).
#[derive(Clone, Copy)]
enum MeetingKey<'a> {
    Id(Uuid),
    JoinMeetingId(i64),
    LinkToken(&'a str),
}

const MEETING_COLUMNS: &str = "SELECT id, created_at_us, start_us, end_us, subject, organizer, lobby_bypass_scope,
    dial_in_bypass, allowed_presenters, join_meeting_id, passcode, link_token, join_web_url FROM meetings";

/// A meeting row as SQLite returns it, before its text columns are parsed.
type RawMeeting =
    (String, i64, i64, i64, Option<String>, String, String, bool, String, i64, Option<String>, String, String);

fn query_meeting(conn: &Connection, key: MeetingKey<'_>) -> Result<Option<MeetingRow>, StoreError> {
    let read = |r: &rusqlite::Row<'_>| -> rusqlite::Result<RawMeeting> {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
            r.get(8)?,
            r.get(9)?,
            r.get(10)?,
            r.get(11)?,
            r.get(12)?,
        ))
    };
    let raw = match key {
        MeetingKey::Id(id) => {
            conn.prepare_cached(&format!("{MEETING_COLUMNS} WHERE id = ?1"))?.query_row(params![id.to_string()], read)
        }
        MeetingKey::JoinMeetingId(join_id) => conn
            .prepare_cached(&format!("{MEETING_COLUMNS} WHERE join_meeting_id = ?1"))?
            .query_row(params![join_id], read),
        MeetingKey::LinkToken(token) => {
            conn.prepare_cached(&format!("{MEETING_COLUMNS} WHERE link_token = ?1"))?.query_row(params![token], read)
        }
    }
    .optional()?;
    let Some((
        id,
        created_at_us,
        start_us,
        end_us,
        subject,
        organizer,
        scope,
        dial_in,
        presenters,
        join_id,
        passcode,
        link_token,
        url,
    )) = raw
    else {
        return Ok(None);
    };
    let attendees = conn
        .prepare_cached("SELECT identity, role FROM meeting_attendees WHERE meeting_id = ?1 ORDER BY position")?
        .query_map(params![id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .map(|(identity, role)| {
            let role = MeetingRole::parse(&role).map_err(|_| StoreError::Corrupt(format!("attendee role `{role}`")))?;
            Ok((parse_uuid(&identity, "attendee identity")?, role))
        })
        .collect::<Result<_, StoreError>>()?;
    Ok(Some(MeetingRow {
        id: parse_uuid(&id, "meeting ID")?,
        created_at_us,
        start_us,
        end_us,
        subject,
        organizer: parse_uuid(&organizer, "meeting organizer")?,
        attendees,
        lobby_bypass_scope: LobbyBypassScope::parse(&scope)
            .map_err(|_| StoreError::Corrupt(format!("lobby bypass scope `{scope}`")))?,
        is_dial_in_bypass_enabled: dial_in,
        allowed_presenters: AllowedPresenters::parse(&presenters)
            .map_err(|_| StoreError::Corrupt(format!("allowed presenters `{presenters}`")))?,
        join_meeting_id: join_id,
        passcode,
        link_token,
        join_web_url: url,
    }))
}

fn insert_attendees(conn: &Connection, meeting: Uuid, attendees: &[(Uuid, MeetingRole)]) -> Result<(), StoreError> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO meeting_attendees (meeting_id, position, identity, role) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (position, (identity, role)) in attendees.iter().enumerate() {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        insert.execute(params![meeting.to_string(), position, identity.to_string(), role.as_str()])?;
    }
    Ok(())
}

fn parse_uuid(text: &str, what: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|_| StoreError::Corrupt(format!("{what} `{text}`")))
}

/// A fresh join meeting ID: 12 decimal digits (no leading zero), like the meeting IDs Teams
/// hands out, from the OS random generator (through `Uuid::new_v4`): with no passcode, knowing it
/// is what lets a stranger knock at the lobby, so it must not be predictable.
fn random_join_meeting_id() -> i64 {
    const LOWEST: u64 = 100_000_000_000;
    let random = Uuid::new_v4().as_u64_pair().1;
    i64::try_from(LOWEST + random % (9 * LOWEST)).expect("below 10^12, far inside i64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_meeting<'a>(attendees: &'a [(Uuid, MeetingRole)], link_token: &'a str) -> NewMeeting<'a> {
        NewMeeting {
            created_at_us: 1,
            start_us: 1,
            end_us: 2,
            subject: Some("s"),
            organizer: Uuid::new_v4(),
            attendees,
            lobby_bypass_scope: LobbyBypassScope::Invited,
            is_dial_in_bypass_enabled: true,
            allowed_presenters: AllowedPresenters::RoleIsPresenter,
            passcode: Some("Ab3xYz"),
            link_token,
            join_web_url: "https://h/meet/t",
        }
    }

    #[test]
    fn meetings_keep_attendee_order_and_cascade() {
        let s = Store::open_in_memory().expect("in-memory db");
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let attendees = [(b, MeetingRole::Presenter), (a, MeetingRole::Attendee)];
        let m = s.create_meeting(&new_meeting(&attendees, "tok-1")).expect("create");
        assert_eq!(m.attendees, attendees, "the order they were listed in");
        assert!((100_000_000_000..1_000_000_000_000).contains(&m.join_meeting_id), "12 digits: {}", m.join_meeting_id);
        assert_eq!(s.meeting(m.id).expect("get"), Some(m.clone()));
        assert_eq!(s.meeting_by_join_id(m.join_meeting_id).expect("by join ID"), Some(m.clone()));
        assert_eq!(s.meeting_by_link_token("tok-1").expect("by token"), Some(m.clone()));
        assert!(s.create_meeting(&new_meeting(&[], "tok-1")).is_err(), "link tokens are unique");

        let (before, after) = s
            .update_meeting(m.id, |current| {
                Ok::<_, StoreError>(MeetingRow {
                    attendees: vec![(a, MeetingRole::Coorganizer)],
                    subject: None,
                    // Not the store's to change: ignored.
                    join_meeting_id: 7,
                    passcode: None,
                    ..current.clone()
                })
            })
            .expect("update")
            .expect("exists");
        assert_eq!(before, m);
        assert_eq!(after, MeetingRow { attendees: vec![(a, MeetingRole::Coorganizer)], subject: None, ..m.clone() });
        assert!(s.update_meeting(Uuid::new_v4(), |c| Ok::<_, StoreError>(c.clone())).expect("update").is_none());
        assert!(s.delete_meeting(m.id).expect("delete"));
        assert!(!s.delete_meeting(m.id).expect("delete twice"));
        let left: i64 = s
            .conn()
            .expect("conn")
            .query_row("SELECT COUNT(*) FROM meeting_attendees", [], |r| r.get(0))
            .expect("count");
        assert_eq!(left, 0, "attendees go with their meeting");
    }
}
