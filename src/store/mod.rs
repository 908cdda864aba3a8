//! The embedded SQLite store (WAL mode). It holds what must survive a restart, including a
//! `kill -9`: identities and their token revocation generation, ACS rooms with their
//! participants, and meetings with their attendees. One connection behind a mutex; callers on async tasks go through
//! `spawn_blocking`. All SQL of the server lives in this module: identities here,
//! rooms in `rooms.rs`, meetings in `meetings.rs`, online backup and restore in `backup.rs`.

use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Mutex;
use uuid::Uuid;

pub mod backup;
mod meetings;
mod rooms;

pub use meetings::{MeetingRow, NewMeeting};
pub use rooms::{NewRoom, ParticipantWrite, RoomRecord};

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
    #[error("{0} is not a Switchboard database (its schema version is 0)")]
    NotAStore(String),
    #[error("not a Switchboard backup (it has no table of data-directory files); make one with `switchboard backup`")]
    NotABackup,
    #[error("the database stayed busy; try again")]
    Busy,
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
    /// Milliseconds every store call waits first: a slow disk, simulated (`simulate_slow_disk`).
    slow_disk_ms: std::sync::atomic::AtomicU64,
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
        Ok(Self { conn: Mutex::new(conn), slow_disk_ms: std::sync::atomic::AtomicU64::new(0) })
    }

    pub(super) fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        let slow = self.slow_disk_ms.load(std::sync::atomic::Ordering::Relaxed);
        if slow > 0 {
            std::thread::sleep(std::time::Duration::from_millis(slow));
        }
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    /// Make every store call wait `delay` first, as on a disk that stalls (tests that the server
    /// never waits for the store on its async threads). Zero turns it off.
    #[doc(hidden)]
    pub fn simulate_slow_disk(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.slow_disk_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
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
