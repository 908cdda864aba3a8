//! The embedded SQLite store (WAL mode). It holds what must survive a restart, including a
//! `kill -9`: identities and their token revocation generation, ACS rooms with their
//! participants, and meetings with their attendees. One connection behind a mutex; callers on async tasks go through
//! `spawn_blocking`. All SQL of the server lives in this file.

use crate::meeting_policy::{AllowedPresenters, LobbyBypassScope, MeetingRole};
use crate::rooms::Role;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;
use uuid::Uuid;

/// Store failures. SQLite errors are not the caller's fault and map to 500s.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database schema version {found} is newer than this server understands ({supported})")]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("a database lock was poisoned by a panic")]
    Poisoned,
    #[error("the database holds a value this server cannot read: {0}")]
    Corrupt(String),
}

/// One stored identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityRecord {
    pub id: Uuid,
    pub external_id: Option<String>,
    /// Unix milliseconds.
    pub created_at_ms: i64,
    /// Tokens carry the generation they were issued under; revoking bumps it.
    pub token_generation: u32,
    /// Unix milliseconds of the last token issued, if any.
    pub last_token_issued_at_ms: Option<i64>,
}

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

const SCHEMA_VERSION: i64 = 3;

const MIGRATIONS: &[&str] = &[
    "CREATE TABLE identities (
        id TEXT PRIMARY KEY NOT NULL,
        external_id TEXT UNIQUE,
        created_at_ms INTEGER NOT NULL,
        token_generation INTEGER NOT NULL DEFAULT 0,
        last_token_issued_at_ms INTEGER
    ) STRICT;",
    // ACS rooms. Rooms are listed newest first, hence the index; participants are found by room
    // and identity (the primary key) and go away with their room.
    "CREATE TABLE rooms (
        id INTEGER PRIMARY KEY NOT NULL,
        created_at_us INTEGER NOT NULL,
        valid_from_us INTEGER NOT NULL,
        valid_until_us INTEGER NOT NULL,
        pstn_dial_out_enabled INTEGER NOT NULL DEFAULT 0,
        repeatability_id TEXT UNIQUE
    ) STRICT;
    CREATE INDEX rooms_newest_first ON rooms (created_at_us DESC, id DESC);
    CREATE TABLE room_participants (
        room_id INTEGER NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
        identity TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (room_id, identity)
    ) STRICT, WITHOUT ROWID;",
    // Meetings. Found by ID, by join meeting ID and by the token of their join link (all unique);
    // listed newest first. Attendees keep the order they were listed in and go with their
    // meeting; an identity is listed at most once.
    "CREATE TABLE meetings (
        id TEXT PRIMARY KEY NOT NULL,
        created_at_us INTEGER NOT NULL,
        start_us INTEGER NOT NULL,
        end_us INTEGER NOT NULL,
        subject TEXT,
        organizer TEXT NOT NULL,
        lobby_bypass_scope TEXT NOT NULL,
        dial_in_bypass INTEGER NOT NULL,
        allowed_presenters TEXT NOT NULL,
        join_meeting_id INTEGER NOT NULL UNIQUE,
        passcode TEXT,
        link_token TEXT NOT NULL UNIQUE,
        join_web_url TEXT NOT NULL
    ) STRICT;
    CREATE INDEX meetings_newest_first ON meetings (created_at_us DESC, id DESC);
    CREATE TABLE meeting_attendees (
        meeting_id TEXT NOT NULL REFERENCES meetings (id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        identity TEXT NOT NULL,
        role TEXT NOT NULL,
        PRIMARY KEY (meeting_id, position),
        UNIQUE (meeting_id, identity)
    ) STRICT, WITHOUT ROWID;",
];

/// The SQLite database under the data directory.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Open (creating if needed) the database file and bring its schema up to date.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// A private in-memory database (unit tests and benchmarks).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        // WAL with synchronous=NORMAL: a committed transaction survives a process crash
        // (kill -9); only an OS crash can lose the last commits.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew { found: version, supported: SCHEMA_VERSION });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i64::try_from(i + 1).unwrap_or(i64::MAX))?;
            tx.commit()?;
        }
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Create an identity. With an `external_id` that is already known, return that identity
    /// instead; the boolean says whether a new one was created.
    pub fn create_identity(
        &self,
        external_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(IdentityRecord, bool), StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        if let Some(ext) = external_id
            && let Some(existing) = query_identity(&tx, "external_id", ext)?
        {
            return Ok((existing, false));
        }
        let record = IdentityRecord {
            id: Uuid::new_v4(),
            external_id: external_id.map(str::to_owned),
            created_at_ms: now_ms,
            token_generation: 0,
            last_token_issued_at_ms: None,
        };
        tx.execute(
            "INSERT INTO identities (id, external_id, created_at_ms) VALUES (?1, ?2, ?3)",
            params![record.id.to_string(), record.external_id, now_ms],
        )?;
        tx.commit()?;
        Ok((record, true))
    }

    /// Look an identity up by ID.
    pub fn identity(&self, id: Uuid) -> Result<Option<IdentityRecord>, StoreError> {
        query_identity(&*self.conn()?, "id", &id.to_string())
    }

    /// Delete an identity; returns whether it existed.
    pub fn delete_identity(&self, id: Uuid) -> Result<bool, StoreError> {
        let n = self.conn()?.execute("DELETE FROM identities WHERE id = ?1", params![id.to_string()])?;
        Ok(n > 0)
    }

    /// Bump the token generation (revoking every token issued so far). Returns the new
    /// generation, or `None` for an unknown identity.
    pub fn revoke_tokens(&self, id: Uuid) -> Result<Option<u32>, StoreError> {
        let conn = self.conn()?;
        let generation: Option<u32> = conn
            .query_row(
                "UPDATE identities SET token_generation = token_generation + 1 WHERE id = ?1
                 RETURNING token_generation",
                params![id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(generation)
    }

    /// Record that a token was issued; returns the generation to put in it and the identity's
    /// externalId (its organization membership follows from it), or `None` for an unknown
    /// identity. One statement, so the token describes the identity as it was when issued.
    pub fn note_token_issued(&self, id: Uuid, now_ms: i64) -> Result<Option<(u32, Option<String>)>, StoreError> {
        let conn = self.conn()?;
        let issued = conn
            .query_row(
                "UPDATE identities SET last_token_issued_at_ms = ?2 WHERE id = ?1
                 RETURNING token_generation, external_id",
                params![id.to_string(), now_ms],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        Ok(issued)
    }

    /// How many identities exist (for metrics and tests).
    pub fn identity_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn()?.query_row("SELECT COUNT(*) FROM identities", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
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

fn query_identity(conn: &Connection, column: &str, value: &str) -> Result<Option<IdentityRecord>, StoreError> {
    // `column` is one of two constants chosen by this module, never user input.
    let sql = match column {
        "id" => {
            "SELECT id, external_id, created_at_ms, token_generation, last_token_issued_at_ms FROM identities WHERE id = ?1"
        }
        _ => {
            "SELECT id, external_id, created_at_ms, token_generation, last_token_issued_at_ms FROM identities WHERE external_id = ?1"
        }
    };
    let row = conn
        .prepare_cached(sql)?
        .query_row(params![value], |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .optional()?;
    Ok(row.and_then(|(id, external_id, created_at_ms, token_generation, last)| {
        Some(IdentityRecord {
            id: Uuid::parse_str(&id).ok()?,
            external_id,
            created_at_ms,
            token_generation,
            last_token_issued_at_ms: last,
        })
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_idempotent_by_external_id() {
        let s = Store::open_in_memory().expect("in-memory db");
        let (a, created) = s.create_identity(Some("alice"), 1).expect("create");
        assert!(created);
        let (b, created) = s.create_identity(Some("alice"), 2).expect("create again");
        assert!(!created);
        assert_eq!(a, b);
        let (c, _) = s.create_identity(None, 3).expect("anonymous");
        assert_ne!(a.id, c.id);
        assert_eq!(s.identity_count().expect("count"), 2);
    }

    #[test]
    fn revoke_bumps_generation_and_delete_removes() {
        let s = Store::open_in_memory().expect("in-memory db");
        let (a, _) = s.create_identity(None, 1).expect("create");
        assert_eq!(s.note_token_issued(a.id, 5).expect("issue"), Some((0, None)));
        assert_eq!(s.revoke_tokens(a.id).expect("revoke"), Some(1));
        assert_eq!(s.revoke_tokens(a.id).expect("revoke"), Some(2));
        assert_eq!(s.identity(a.id).expect("get").map(|r| r.last_token_issued_at_ms), Some(Some(5)));
        assert!(s.delete_identity(a.id).expect("delete"));
        assert!(!s.delete_identity(a.id).expect("delete twice"));
        assert_eq!(s.revoke_tokens(a.id).expect("revoke unknown"), None);
        assert_eq!(s.identity(a.id).expect("get"), None);
    }

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

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db.sqlite");
        let id = {
            let s = Store::open(&path).expect("open");
            let (a, _) = s.create_identity(Some("x"), 1).expect("create");
            s.revoke_tokens(a.id).expect("revoke");
            a.id
        };
        let s = Store::open(&path).expect("reopen");
        assert_eq!(s.identity(id).expect("get").map(|r| r.token_generation), Some(1));
    }
}
