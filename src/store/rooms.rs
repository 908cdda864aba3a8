//! Rooms in the store: ACS rooms and their participant lists.

use super::{Store, StoreError};
use crate::rooms::Role;
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

/// One stored ACS room: its schedule and settings (participants are rows of their own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomRecord {
    /// The room ID. ACS room IDs are numeric strings; this is their value.
    pub id: i64,
    /// Unix microseconds, like the other times here: ACS keeps sub-second precision, so a time a
    /// client set comes back exactly as it was sent.
    pub created_at_us: i64,
    /// The room can be joined from this time...
    pub valid_from_us: i64,
    /// ...until (excluding) this one.
    pub valid_until_us: i64,
    pub pstn_dial_out_enabled: bool,
}

/// A room to insert, with its first participants.
#[derive(Debug, Clone, Copy)]
pub struct NewRoom<'a> {
    pub created_at_us: i64,
    pub valid_from_us: i64,
    pub valid_until_us: i64,
    pub pstn_dial_out_enabled: bool,
    pub participants: &'a [(Uuid, Role)],
    /// The client's `Repeatability-Request-ID`: a create repeated with the same value returns
    /// the room the first one made instead of making another.
    pub repeatability_id: Option<&'a str>,
}

/// What `write_participants` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantWrite {
    NoSuchRoom,
    /// The room would have held `would_hold` participants, more than allowed; nothing changed.
    OverLimit {
        would_hold: usize,
    },
    /// Applied. Only real changes are listed: added or re-roled identities with their new role
    /// (sorted by identity), and identities that were participants and are no longer.
    Written {
        changed: Vec<(Uuid, Role)>,
        removed: Vec<Uuid>,
    },
}

/// Rooms: create, read, update and delete rooms and their participants. Every method that reads
/// then writes does both in one transaction under the connection lock, so concurrent requests
/// cannot interleave between the check and the write.
impl Store {
    /// Insert a room and its participants under a fresh random ID. When `repeatability_id` names
    /// an earlier create, return that room instead; the boolean says whether a room was created.
    pub fn create_room(&self, room: &NewRoom<'_>) -> Result<(RoomRecord, bool), StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        if let Some(key) = room.repeatability_id {
            let existing: Option<i64> = tx
                .query_row("SELECT id FROM rooms WHERE repeatability_id = ?1", params![key], |r| r.get(0))
                .optional()?;
            if let Some(record) = existing.map(|id| query_room(&tx, id)).transpose()?.flatten() {
                return Ok((record, false));
            }
        }
        let mut id = random_room_id();
        while tx.query_row("SELECT 1 FROM rooms WHERE id = ?1", params![id], |_| Ok(())).optional()?.is_some() {
            id = random_room_id();
        }
        let record = RoomRecord {
            id,
            created_at_us: room.created_at_us,
            valid_from_us: room.valid_from_us,
            valid_until_us: room.valid_until_us,
            pstn_dial_out_enabled: room.pstn_dial_out_enabled,
        };
        tx.execute(
            "INSERT INTO rooms (id, created_at_us, valid_from_us, valid_until_us, pstn_dial_out_enabled, repeatability_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                id,
                record.created_at_us,
                record.valid_from_us,
                record.valid_until_us,
                record.pstn_dial_out_enabled,
                room.repeatability_id
            ],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO room_participants (room_id, identity, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT (room_id, identity) DO UPDATE SET role = excluded.role",
            )?;
            for (identity, role) in room.participants {
                insert.execute(params![id, identity.to_string(), role.as_str()])?;
            }
        }
        tx.commit()?;
        Ok((record, true))
    }

    pub fn room(&self, id: i64) -> Result<Option<RoomRecord>, StoreError> {
        query_room(&*self.conn()?, id)
    }

    /// Up to `limit` rooms, newest first, starting after the room with the given
    /// `(created_at_us, id)` (the last one of the previous page).
    pub fn rooms_page(&self, after: Option<(i64, i64)>, limit: usize) -> Result<Vec<RoomRecord>, StoreError> {
        let conn = self.conn()?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = match after {
            None => conn
                .prepare_cached(&format!("{ROOM_COLUMNS} ORDER BY created_at_us DESC, id DESC LIMIT ?1"))?
                .query_map(params![limit], room_from_row)?
                .collect::<Result<Vec<_>, _>>()?,
            Some((created_at_us, id)) => conn
                .prepare_cached(&format!(
                    "{ROOM_COLUMNS} WHERE (created_at_us, id) < (?1, ?2) ORDER BY created_at_us DESC, id DESC LIMIT ?3"
                ))?
                .query_map(params![created_at_us, id, limit], room_from_row)?
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows)
    }

    /// Read a room, let `change` compute its new state (or refuse), and write that, in one
    /// transaction. `Ok(None)`: no such room.
    pub fn update_room<E: From<StoreError>>(
        &self,
        id: i64,
        change: impl FnOnce(&RoomRecord) -> Result<RoomRecord, E>,
    ) -> Result<Option<RoomRecord>, E> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction().map_err(StoreError::from)?;
        let Some(current) = query_room(&tx, id)? else {
            return Ok(None);
        };
        let updated = change(&current)?;
        tx.execute(
            "UPDATE rooms SET valid_from_us = ?2, valid_until_us = ?3, pstn_dial_out_enabled = ?4 WHERE id = ?1",
            params![id, updated.valid_from_us, updated.valid_until_us, updated.pstn_dial_out_enabled],
        )
        .map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(Some(RoomRecord { id, created_at_us: current.created_at_us, ..updated }))
    }

    /// Delete a room and its participants; returns whether it existed.
    pub fn delete_room(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.conn()?.execute("DELETE FROM rooms WHERE id = ?1", params![id])? > 0)
    }

    /// Up to `limit` participants of a room in identity order, starting after `after`.
    /// `Ok(None)`: no such room.
    pub fn participants_page(
        &self,
        room_id: i64,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Option<Vec<(Uuid, Role)>>, StoreError> {
        let conn = self.conn()?;
        if query_room(&conn, room_id)?.is_none() {
            return Ok(None);
        }
        let after = after.map_or_else(String::new, |u| u.to_string());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = conn
            .prepare_cached(
                "SELECT identity, role FROM room_participants WHERE room_id = ?1 AND identity > ?2
                 ORDER BY identity LIMIT ?3",
            )?
            .query_map(params![room_id, after, limit], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(|(identity, role)| participant(&identity, &role)).collect::<Result<_, _>>().map(Some)
    }

    /// Add or re-role `upserts` and remove `removals` in one transaction, unless the room would
    /// then hold more than `max_participants`. An identity must not be in both lists.
    pub fn write_participants(
        &self,
        room_id: i64,
        upserts: &[(Uuid, Role)],
        removals: &[Uuid],
        max_participants: usize,
    ) -> Result<ParticipantWrite, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        if query_room(&tx, room_id)?.is_none() {
            return Ok(ParticipantWrite::NoSuchRoom);
        }
        let mut changed = Vec::new();
        let mut removed = Vec::new();
        {
            let mut current_role =
                tx.prepare_cached("SELECT role FROM room_participants WHERE room_id = ?1 AND identity = ?2")?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO room_participants (room_id, identity, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT (room_id, identity) DO UPDATE SET role = excluded.role",
            )?;
            for (identity, role) in upserts {
                let key = identity.to_string();
                let before: Option<String> = current_role.query_row(params![room_id, key], |r| r.get(0)).optional()?;
                if before.as_deref() != Some(role.as_str()) {
                    upsert.execute(params![room_id, key, role.as_str()])?;
                    changed.push((*identity, *role));
                }
            }
            let mut delete = tx.prepare_cached("DELETE FROM room_participants WHERE room_id = ?1 AND identity = ?2")?;
            for identity in removals {
                if delete.execute(params![room_id, identity.to_string()])? > 0 {
                    removed.push(*identity);
                }
            }
        }
        let count: i64 =
            tx.query_row("SELECT COUNT(*) FROM room_participants WHERE room_id = ?1", params![room_id], |r| r.get(0))?;
        let count = usize::try_from(count).unwrap_or(usize::MAX);
        if count > max_participants {
            // Dropping the transaction rolls it back.
            return Ok(ParticipantWrite::OverLimit { would_hold: count });
        }
        tx.commit()?;
        changed.sort_unstable_by_key(|(identity, _)| *identity);
        removed.sort_unstable();
        Ok(ParticipantWrite::Written { changed, removed })
    }

    /// A room and the role `identity` has in it (`None` when it is not a participant), in one
    /// read: what a join needs. `Ok(None)`: no such room.
    pub fn room_admission(
        &self,
        room_id: i64,
        identity: Uuid,
    ) -> Result<Option<(RoomRecord, Option<Role>)>, StoreError> {
        let conn = self.conn()?;
        let Some(room) = query_room(&conn, room_id)? else {
            return Ok(None);
        };
        let role: Option<String> = conn
            .prepare_cached("SELECT role FROM room_participants WHERE room_id = ?1 AND identity = ?2")?
            .query_row(params![room_id, identity.to_string()], |r| r.get(0))
            .optional()?;
        let role = role.map(|r| parse_role(&r)).transpose()?;
        Ok(Some((room, role)))
    }
}

const ROOM_COLUMNS: &str = "SELECT id, created_at_us, valid_from_us, valid_until_us, pstn_dial_out_enabled FROM rooms";

fn query_room(conn: &Connection, id: i64) -> Result<Option<RoomRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("{ROOM_COLUMNS} WHERE id = ?1"))?
        .query_row(params![id], room_from_row)
        .optional()?)
}

fn room_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RoomRecord> {
    Ok(RoomRecord {
        id: r.get(0)?,
        created_at_us: r.get(1)?,
        valid_from_us: r.get(2)?,
        valid_until_us: r.get(3)?,
        pstn_dial_out_enabled: r.get(4)?,
    })
}

fn participant(identity: &str, role: &str) -> Result<(Uuid, Role), StoreError> {
    let id =
        Uuid::parse_str(identity).map_err(|_| StoreError::Corrupt(format!("participant identity `{identity}`")))?;
    Ok((id, parse_role(role)?))
}

fn parse_role(role: &str) -> Result<Role, StoreError> {
    Role::parse(role).map_err(|_| StoreError::Corrupt(format!("participant role `{role}`")))
}

/// A fresh room ID: 17 decimal digits like the IDs ACS hands out, random so that IDs reveal
/// neither how many rooms exist nor their order.
fn random_room_id() -> i64 {
    const LOWEST: u64 = 10_000_000_000_000_000;
    let random = Uuid::new_v4().as_u64_pair().1;
    i64::try_from(LOWEST + random % (9 * LOWEST)).expect("below 10^17, far inside i64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_room<'a>(participants: &'a [(Uuid, Role)], repeatability_id: Option<&'a str>) -> NewRoom<'a> {
        NewRoom {
            created_at_us: 1,
            valid_from_us: 1,
            valid_until_us: 2,
            pstn_dial_out_enabled: false,
            participants,
            repeatability_id,
        }
    }

    #[test]
    fn rooms_cascade_their_participants_and_repeat_by_request_id() {
        let s = Store::open_in_memory().expect("in-memory db");
        let alice = Uuid::new_v4();
        let (room, created) = s.create_room(&new_room(&[(alice, Role::Presenter)], Some("req-1"))).expect("create");
        assert!(created);
        assert!((10_000_000_000_000_000..100_000_000_000_000_000).contains(&room.id), "17 digits: {}", room.id);
        let (again, created) = s.create_room(&new_room(&[], Some("req-1"))).expect("repeat");
        assert_eq!((again, created), (room, false), "the same request ID returns the first room");
        assert_eq!(s.room_admission(room.id, alice).expect("admission"), Some((room, Some(Role::Presenter))));
        assert!(s.delete_room(room.id).expect("delete"));
        assert!(!s.delete_room(room.id).expect("delete twice"));
        let left: i64 = s
            .conn()
            .expect("conn")
            .query_row("SELECT COUNT(*) FROM room_participants", [], |r| r.get(0))
            .expect("count");
        assert_eq!(left, 0, "participants go with their room");
        assert_eq!(s.participants_page(room.id, None, 10).expect("page"), None);
    }

    #[test]
    fn participant_writes_report_only_real_changes_and_respect_the_limit() {
        let s = Store::open_in_memory().expect("in-memory db");
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let (room, _) = s.create_room(&new_room(&[(a, Role::Attendee), (b, Role::Attendee)], None)).expect("create");
        let written =
            s.write_participants(room.id, &[(a, Role::Attendee), (b, Role::Consumer)], &[c], 3).expect("write");
        assert_eq!(written, ParticipantWrite::Written { changed: vec![(b, Role::Consumer)], removed: vec![] });
        let over = s.write_participants(room.id, &[(c, Role::Presenter)], &[], 2).expect("write");
        assert_eq!(over, ParticipantWrite::OverLimit { would_hold: 3 });
        let page = s.participants_page(room.id, None, 10).expect("page").expect("room");
        assert_eq!(page.len(), 2, "the refused write left nothing behind");
        let written = s.write_participants(room.id, &[], &[a], 2).expect("write");
        assert_eq!(written, ParticipantWrite::Written { changed: vec![], removed: vec![a] });
        assert_eq!(s.write_participants(room.id + 1, &[], &[a], 2).expect("write"), ParticipantWrite::NoSuchRoom);
    }
}
