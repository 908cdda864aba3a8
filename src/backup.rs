//! `switchboard backup` and `switchboard restore`: a data directory to one file and back.
//!
//! A backup is taken while the server runs: the database through SQLite's backup API (never a
//! file copy, which would miss what is still in the WAL or tear a page being written), plus the
//! files `bootstrap` generated in the data directory, since identities' raw IDs carry the
//! resource ID and tokens verify only against the key that signed them (`store::backup`). The
//! backup therefore holds secrets and is written readable by its owner only.
//!
//! A restore goes only into an empty (or new) data directory: it never merges into, or replaces,
//! a server's state.

use crate::bootstrap::{DB_FILE, GENERATED_FILES};
use crate::store::StoreError;
use crate::store::backup::{restore_backup, write_backup};
use std::path::{Path, PathBuf};

pub use crate::store::backup::BackupContents;

/// Failures of a backup or a restore; each names the path at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("no database at {0}: is server.data_dir right? (the server creates the database on its first start)")]
    NoDatabase(String),
    #[error("{0} already exists; choose a new file name or replace it explicitly")]
    Exists(String),
    #[error("{0} is the live database or one of its files; write the backup elsewhere")]
    IsLiveDatabase(String),
    #[error("cannot write the backup to {path}: {reason}")]
    Destination { path: String, reason: String },
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot back up {path}: {cause}")]
    Backup { path: String, cause: StoreError },
    #[error("cannot restore from {path}: {cause}")]
    Restore { path: String, cause: StoreError },
    #[error("backup {path} carries a file this server does not know ({name}); it was not made by `switchboard backup`")]
    UnknownFile { path: String, name: String },
    #[error(
        "data directory {path} is not empty (it holds {entry}); restore only into a new or empty data directory, never over a server's state"
    )]
    NotEmpty { path: String, entry: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
}

/// Back the data directory `data_dir` up into the new file `dest` (replacing an existing file
/// only when `replace`). Safe while the server runs.
pub fn backup(data_dir: &Path, dest: &Path, replace: bool) -> Result<BackupContents, BackupError> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.display().to_string()));
    }
    let destination = |reason: String| BackupError::Destination { path: dest.display().to_string(), reason };
    let name = dest.file_name().ok_or_else(|| destination("not a file name".to_owned()))?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let parent_abs =
        parent.canonicalize().map_err(|e| destination(format!("its directory {}: {e}", parent.display())))?;
    let db_abs =
        db.canonicalize().map_err(|e| BackupError::Read { path: db.display().to_string(), reason: e.to_string() })?;
    let target = parent_abs.join(name);
    // The database, its WAL, its shared memory or its journal.
    let live = Some(parent_abs.as_path()) == db_abs.parent() && name.to_string_lossy().starts_with(DB_FILE);
    if live || same_file(&target, &db_abs) {
        return Err(BackupError::IsLiveDatabase(dest.display().to_string()));
    }
    if target.is_dir() {
        return Err(destination("it is a directory".to_owned()));
    }
    if !replace && target.exists() {
        return Err(BackupError::Exists(dest.display().to_string()));
    }

    let mut files = Vec::new();
    for name in GENERATED_FILES {
        let path = data_dir.join(name);
        match std::fs::read(&path) {
            Ok(content) => files.push((name.to_owned(), content)),
            // Configured instead of generated (e.g. `tokens.signing_key`): not ours to carry.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BackupError::Read { path: path.display().to_string(), reason: e.to_string() }),
        }
    }

    // Written beside the destination and renamed into place, so `dest` is never a half backup.
    let partial =
        TempFile::create(parent_abs.join(format!(".{}.partial-{}", name.to_string_lossy(), std::process::id())))
            .map_err(|e| destination(e.to_string()))?;
    let held = write_backup(&db, &partial.path, &files)
        .map_err(|cause| BackupError::Backup { path: db.display().to_string(), cause })?;
    sync(&partial.path).map_err(|e| destination(e.to_string()))?;
    partial.persist(&target).map_err(|e| destination(e.to_string()))?;
    Ok(held)
}

/// Restore the backup `file` into `data_dir`, which must be empty or not exist yet.
pub fn restore(file: &Path, data_dir: &Path) -> Result<BackupContents, BackupError> {
    if !file.is_file() {
        let reason = if file.exists() { "not a file" } else { "no such file" };
        return Err(BackupError::Read { path: file.display().to_string(), reason: reason.to_owned() });
    }
    let write_err =
        |path: &Path, e: std::io::Error| BackupError::Write { path: path.display().to_string(), reason: e.to_string() };
    std::fs::create_dir_all(data_dir).map_err(|e| write_err(data_dir, e))?;
    let first = std::fs::read_dir(data_dir).map_err(|e| write_err(data_dir, e))?.next();
    if let Some(entry) = first {
        let entry = entry.map_err(|e| write_err(data_dir, e))?;
        return Err(BackupError::NotEmpty {
            path: data_dir.display().to_string(),
            entry: entry.file_name().to_string_lossy().into_owned(),
        });
    }
    let mut written = Written(Vec::new());
    let db = data_dir.join(DB_FILE);
    let partial = data_dir.join(format!("{DB_FILE}.restoring"));
    written.0.push(partial.clone());
    written.0.extend(["-journal", "-wal", "-shm"].map(|s| data_dir.join(format!("{DB_FILE}.restoring{s}"))));
    let (held, files) = restore_backup(file, &partial)
        .map_err(|cause| BackupError::Restore { path: file.display().to_string(), cause })?;
    for (name, content) in &files {
        if !GENERATED_FILES.contains(&name.as_str()) {
            return Err(BackupError::UnknownFile { path: file.display().to_string(), name: name.clone() });
        }
        let path = data_dir.join(name);
        if let Some(dir) = path.parent().filter(|d| *d != data_dir) {
            std::fs::create_dir_all(dir).map_err(|e| write_err(dir, e))?;
            written.0.push(dir.to_path_buf());
        }
        written.0.push(path.clone());
        write_private(&path, content).map_err(|e| write_err(&path, e))?;
    }
    sync(&partial).map_err(|e| write_err(&partial, e))?;
    std::fs::rename(&partial, &db).map_err(|e| write_err(&db, e))?;
    written.0.clear();
    Ok(held)
}

/// What a failed restore wrote, removed again so the data directory is as empty as it was.
struct Written(Vec<PathBuf>);

impl Drop for Written {
    fn drop(&mut self) {
        for path in self.0.iter().rev() {
            let _ = if path.is_dir() { std::fs::remove_dir(path) } else { std::fs::remove_file(path) };
        }
    }
}

/// A file that is removed unless it is persisted.
struct TempFile {
    path: PathBuf,
}

impl TempFile {
    /// Create `path`, which must not exist, readable by its owner only.
    fn create(path: PathBuf) -> std::io::Result<Self> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&path)?;
        Ok(Self { path })
    }

    fn persist(self, to: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.path, to)?;
        std::mem::forget(self);
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        for suffix in ["-journal", "-wal", "-shm"] {
            let mut side = self.path.clone().into_os_string();
            side.push(suffix);
            let _ = std::fs::remove_file(side);
        }
    }
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(content)?;
    file.sync_all()
}

fn sync(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[cfg(unix)]
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &Path, _: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn prepared_data_dir(dir: &Path) -> PathBuf {
        let mut config = Config::default();
        config.server.data_dir = dir.join("data");
        let prepared = crate::bootstrap::prepare(&config).expect("prepare");
        let store = crate::store::Store::open(&prepared.db_path).expect("open");
        store.create_identity(Some("x"), 1).expect("create");
        prepared.data_dir
    }

    #[test]
    fn backup_refuses_bad_destinations_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = prepared_data_dir(dir.path());
        let missing = backup(&data, &dir.path().join("no/such/dir/b.sqlite"), false);
        assert!(matches!(missing, Err(BackupError::Destination { .. })), "{missing:?}");
        let into_dir = backup(&data, dir.path(), true);
        assert!(matches!(into_dir, Err(BackupError::Destination { .. })), "{into_dir:?}");
        let live = backup(&data, &data.join(DB_FILE), true);
        assert!(matches!(live, Err(BackupError::IsLiveDatabase(_))), "{live:?}");
        let wal = backup(&data, &data.join(format!("{DB_FILE}-wal")), true);
        assert!(matches!(wal, Err(BackupError::IsLiveDatabase(_))), "{wal:?}");
        let no_db = backup(&dir.path().join("elsewhere"), &dir.path().join("b.sqlite"), false);
        assert!(matches!(no_db, Err(BackupError::NoDatabase(_))), "{no_db:?}");

        let dest = dir.path().join("b.sqlite");
        backup(&data, &dest, false).expect("backup");
        assert!(matches!(backup(&data, &dest, false), Err(BackupError::Exists(_))));
        backup(&data, &dest, true).expect("replace when asked");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&dest).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "a backup holds secrets");
        }
        let names: Vec<_> =
            std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names.len(), 2, "no partial files left: {names:?}");
    }

    #[test]
    fn restore_only_into_an_empty_data_dir_and_carries_the_generated_files() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = prepared_data_dir(dir.path());
        let dest = dir.path().join("b.sqlite");
        let held = backup(&data, &dest, false).expect("backup");
        assert_eq!(held.files.len(), GENERATED_FILES.len(), "{:?}", held.files);

        let refused = restore(&dest, &data);
        assert!(matches!(refused, Err(BackupError::NotEmpty { .. })), "{refused:?}");
        let new = dir.path().join("new");
        let restored = restore(&dest, &new).expect("restore");
        assert_eq!(restored.identities, 1);
        for name in GENERATED_FILES {
            let same = std::fs::read(new.join(name)).expect("restored file")
                == std::fs::read(data.join(name)).expect("original file");
            assert!(same, "{name} restored as it was");
        }
        assert!(new.join(DB_FILE).is_file());

        let not_backup = restore(&data.join(DB_FILE), &dir.path().join("other"));
        assert!(matches!(not_backup, Err(BackupError::Restore { cause: StoreError::NotABackup, .. })));
        let names: Vec<_> =
            std::fs::read_dir(dir.path().join("other")).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert!(names.is_empty(), "a failed restore leaves the directory empty: {names:?}");
        let missing = restore(&dir.path().join("nope.sqlite"), &dir.path().join("other"));
        assert!(matches!(missing, Err(BackupError::Read { .. })), "{missing:?}");
    }
}
