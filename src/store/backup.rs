//! Online backup and restore of the database file through SQLite's backup API.
//!
//! A backup is one SQLite file: a page-by-page copy of the store taken in a single read
//! transaction (so it is one consistent snapshot even while the server writes to the live,
//! WAL-mode database), plus one extra table, `switchboard_backup_files`, carrying the small
//! data-directory files the store's rows mean nothing without (the resource ID in every raw ID,
//! the keys that signed the tokens). Restoring copies it back the same way and drops that table.

use super::{SCHEMA_VERSION, StoreError};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, params};
use std::path::Path;
use std::time::Duration;

/// The table of a backup file that carries data-directory files (relative path, contents).
const FILES_TABLE: &str = "switchboard_backup_files";

/// How often a busy source is retried (100 ms apart) before giving up.
const BUSY_RETRIES: u32 = 100;

/// A data-directory file a backup carries: its path relative to the data directory, and its
/// contents.
pub type CarriedFile = (String, Vec<u8>);

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupContents {
    pub identities: u64,
    pub rooms: u64,
    pub meetings: u64,
    /// Data-directory relative paths of the files carried along.
    pub files: Vec<String>,
}

/// Copy the live database at `db` into `dest` (a new, empty file) and add `files` (data-directory
/// relative path and contents) to the copy. The copy is left in rollback-journal mode, so it is
/// one self-contained file.
pub fn write_backup(db: &Path, dest: &Path, files: &[CarriedFile]) -> Result<BackupContents, StoreError> {
    let src = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    src.busy_timeout(Duration::from_secs(5))?;
    let version: i64 = src.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        return Err(StoreError::NotAStore(db.display().to_string()));
    }
    let mut dst = Connection::open(dest)?;
    copy_database(&src, &mut dst)?;
    drop(src);
    // The copied header says WAL, as the live database is; a backup is one file.
    dst.pragma_update(None, "journal_mode", "DELETE")?;
    let tx = dst.transaction()?;
    tx.execute_batch(&format!(
        "CREATE TABLE {FILES_TABLE} (path TEXT PRIMARY KEY NOT NULL, content BLOB NOT NULL) STRICT;"
    ))?;
    for (path, content) in files {
        tx.execute(&format!("INSERT INTO {FILES_TABLE} (path, content) VALUES (?1, ?2)"), params![path, content])?;
    }
    tx.commit()?;
    contents(&dst)
}

/// Check that `backup` is a backup this server can restore, copy its database into `db` (a new,
/// empty file) without the carried files, and return them with what the backup holds.
pub fn restore_backup(backup: &Path, db: &Path) -> Result<(BackupContents, Vec<CarriedFile>), StoreError> {
    let src = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let is_backup: bool = src.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
        [FILES_TABLE],
        |r| r.get(0),
    )?;
    if !is_backup {
        return Err(StoreError::NotABackup);
    }
    let check: String = src.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    if check != "ok" {
        return Err(StoreError::Corrupt(format!("integrity check: {check}")));
    }
    let version: i64 = src.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew { found: version, supported: SCHEMA_VERSION });
    }
    let files = src
        .prepare(&format!("SELECT path, content FROM {FILES_TABLE} ORDER BY path"))?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<Vec<CarriedFile>, _>>()?;
    let mut dst = Connection::open(db)?;
    copy_database(&src, &mut dst)?;
    drop(src);
    // VACUUM too, so the carried keys do not linger in the database's free pages.
    dst.execute_batch(&format!("DROP TABLE {FILES_TABLE}; VACUUM;"))?;
    dst.pragma_update(None, "journal_mode", "WAL")?;
    let mut held = contents(&dst)?;
    held.files = files.iter().map(|(path, _)| path.clone()).collect();
    Ok((held, files))
}

/// Every page of `src` into `dst`, in one step: one read transaction, so one snapshot. (Copied
/// in several steps, a write by the server between two steps would restart the copy, and a
/// busy server could keep restarting it.)
fn copy_database(src: &Connection, dst: &mut Connection) -> Result<(), StoreError> {
    let backup = Backup::new(src, dst)?;
    for _ in 0..BUSY_RETRIES {
        match backup.step(-1)? {
            StepResult::Done => return Ok(()),
            StepResult::More => {}
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Err(StoreError::Busy)
}

fn contents(conn: &Connection) -> Result<BackupContents, StoreError> {
    let count = |table: &str| -> Result<u64, StoreError> {
        // `table` is one of the constants below, never user input.
        let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let files = if conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = ?1)",
        [FILES_TABLE],
        |r| r.get(0),
    )? {
        conn.prepare(&format!("SELECT path FROM {FILES_TABLE} ORDER BY path"))?
            .query_map([], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?
    } else {
        Vec::new()
    };
    Ok(BackupContents { identities: count("identities")?, rooms: count("rooms")?, meetings: count("meetings")?, files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn files() -> Vec<CarriedFile> {
        vec![("resource-id".to_owned(), b"r\n".to_vec()), ("keys/token-signing.pem".to_owned(), b"k".to_vec())]
    }

    #[test]
    fn round_trip_carries_rows_and_files_and_the_backup_is_one_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let live = dir.path().join("live.sqlite");
        let store = Store::open(&live).expect("open");
        let (alice, _) = store.create_identity(Some("alice"), 1).expect("create");
        store.revoke_tokens(alice.id).expect("revoke");

        // The store stays open (its last commits are in the WAL only) while the backup runs.
        let backup = dir.path().join("b.sqlite");
        let held = write_backup(&live, &backup, &files()).expect("backup");
        assert_eq!((held.identities, held.rooms, held.meetings), (1, 0, 0));
        assert_eq!(held.files, ["keys/token-signing.pem", "resource-id"]);
        let mode: String = Connection::open(&backup)
            .expect("open backup")
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal mode");
        assert_eq!(mode, "delete");
        assert!(!dir.path().join("b.sqlite-wal").exists());

        let restored = dir.path().join("restored.sqlite");
        let (held, carried) = restore_backup(&backup, &restored).expect("restore");
        assert_eq!(held.identities, 1);
        assert_eq!(carried, {
            let mut f = files();
            f.sort();
            f
        });
        let store = Store::open(&restored).expect("the server opens a restored database");
        let got = store.identity(alice.id).expect("read").expect("alice is there");
        assert_eq!((got.external_id.as_deref(), got.token_generation), (Some("alice"), 1));
        let leftover: bool = store
            .conn()
            .expect("conn")
            .query_row("SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = ?1)", [FILES_TABLE], |r| r.get(0))
            .expect("query");
        assert!(!leftover, "the carried files do not stay in the store");
        let bytes = std::fs::read(&restored).expect("read restored");
        assert!(!bytes.windows(17).any(|w| w == b"keys/token-signin"), "nor in its free pages");
    }

    #[test]
    fn restore_refuses_what_is_not_a_backup() {
        let dir = tempfile::tempdir().expect("tmp");
        let live = dir.path().join("live.sqlite");
        drop(Store::open(&live).expect("open"));
        let out = dir.path().join("out.sqlite");
        assert!(matches!(restore_backup(&live, &out), Err(StoreError::NotABackup)));

        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a database at all, but long enough to have a header......").expect("write");
        assert!(matches!(restore_backup(&text, &out), Err(StoreError::Sqlite(_))));

        let empty = dir.path().join("empty.sqlite");
        Connection::open(&empty).expect("create").execute_batch("CREATE TABLE t (x);").expect("table");
        assert!(matches!(write_backup(&empty, &out, &[]), Err(StoreError::NotAStore(_))));
    }

    #[test]
    fn restore_refuses_a_newer_schema() {
        let dir = tempfile::tempdir().expect("tmp");
        let live = dir.path().join("live.sqlite");
        drop(Store::open(&live).expect("open"));
        let backup = dir.path().join("b.sqlite");
        write_backup(&live, &backup, &[]).expect("backup");
        Connection::open(&backup)
            .expect("open")
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump version");
        let found = restore_backup(&backup, &dir.path().join("out.sqlite"));
        assert!(matches!(found, Err(StoreError::SchemaTooNew { .. })), "{found:?}");
    }
}
