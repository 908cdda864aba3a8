//! First-start preparation of the data directory: the store, the resource ID, the access key, the
//! TLS certificate and the token signing key. Whatever the config leaves empty is generated once,
//! written with owner-only permissions, logged, and reused on every later start (by the server
//! and by the CLI, which share the data directory).

use crate::auth::{KeyError, KeyRing, SigningKey};
use crate::config::Config;
use crate::tls::{self, TlsError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The store's database file in the data directory.
pub const DB_FILE: &str = "switchboard.sqlite";
/// The generated resource ID, in the data directory.
pub const RESOURCE_ID_FILE: &str = "resource-id";
/// The generated access key, in the data directory.
pub const ACCESS_KEY_FILE: &str = "access-key";
/// The generated token signing key, in the data directory.
pub const SIGNING_KEY_FILE: &str = "keys/token-signing.pem";
/// The key of QUIC stateless resets, in the data directory: kept across restarts, so a client
/// of a server that was killed learns at its next packet to the restarted one that its connection
/// is gone, instead of waiting out the idle timeout.
pub const QUIC_RESET_KEY_FILE: &str = "quic-reset-key";
/// The generated TLS material (certificate authority, certificate chain, key), in the data
/// directory.
pub const TLS_FILES: [&str; 3] = ["tls/ca.pem", "tls/cert.pem", "tls/key.pem"];

/// Every file `prepare` may generate in the data directory (besides the database): what the
/// store's rows mean nothing without, so a backup carries them.
pub const GENERATED_FILES: [&str; 7] = [
    RESOURCE_ID_FILE,
    ACCESS_KEY_FILE,
    SIGNING_KEY_FILE,
    TLS_FILES[0],
    TLS_FILES[1],
    TLS_FILES[2],
    QUIC_RESET_KEY_FILE,
];

/// Failures preparing the data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootstrapError {
    #[error("cannot use data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Everything the server and CLI need from the data directory.
pub struct Prepared {
    pub data_dir: PathBuf,
    pub db_path: PathBuf,
    pub resource_id: String,
    /// Raw access keys (base64-decoded); the first is the one connection strings show.
    pub access_keys: Vec<Vec<u8>>,
    /// Where the generated access key lives, when it was not configured.
    pub access_key_file: Option<PathBuf>,
    pub tls_chain: PathBuf,
    pub tls_key: PathBuf,
    /// The certificate clients should trust: the generated CA, or the configured chain.
    pub tls_trust: PathBuf,
    pub keys: KeyRing,
    /// The QUIC stateless reset key (64 bytes).
    pub quic_reset_key: Vec<u8>,
    /// Human-readable notes about what was generated this time.
    pub generated: Vec<String>,
}

impl Prepared {
    /// The first access key in base64, as it appears in connection strings.
    pub fn primary_access_key_b64(&self) -> String {
        B64.encode(&self.access_keys[0])
    }
}

/// Prepare (and on first start, populate) the data directory named by `config`.
pub fn prepare(config: &Config) -> Result<Prepared, BootstrapError> {
    let data_dir = config.server.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| BootstrapError::DataDir { path: data_dir.display().to_string(), reason: e.to_string() })?;
    let mut generated = Vec::new();

    let resource_id = if config.server.resource_id.is_empty() {
        let path = data_dir.join(RESOURCE_ID_FILE);
        let value = ensure_file(&path, &mut generated, "resource ID", || Ok(uuid::Uuid::new_v4().to_string()))?;
        let value = value.trim().to_owned();
        uuid::Uuid::parse_str(&value)
            .map_err(|e| BootstrapError::Corrupt { path: path.display().to_string(), reason: e.to_string() })?;
        value
    } else {
        config.server.resource_id.clone()
    };

    let (access_keys, access_key_file) = if config.auth.access_keys.is_empty() {
        let path = data_dir.join(ACCESS_KEY_FILE);
        let text = ensure_file(&path, &mut generated, "access key", || {
            let mut key = [0u8; 64];
            aws_lc_rs::rand::fill(&mut key).map_err(|_| BootstrapError::Key(KeyError::Generate))?;
            Ok(format!("{}\n", B64.encode(key)))
        })?;
        let key = B64
            .decode(text.trim())
            .map_err(|e| BootstrapError::Corrupt { path: path.display().to_string(), reason: e.to_string() })?;
        (vec![key], Some(path))
    } else {
        let keys = config
            .auth
            .access_keys
            .iter()
            .map(|k| B64.decode(k).expect("config validation checked every access key is base64"))
            .collect();
        (keys, None)
    };

    let (tls_chain, tls_key, tls_trust) = if config.http.tls_cert.as_os_str().is_empty() {
        let [ca, chain, key] = TLS_FILES.map(|name| data_dir.join(name));
        create_dir(ca.parent().expect("TLS_FILES are paths inside a directory"))?;
        if !(chain.exists() && key.exists() && ca.exists()) {
            let g = tls::generate(&config.http.tls_names)?;
            write_private(&key, &g.key_pem)?;
            write_private(&chain, &g.chain_pem)?;
            write_private(&ca, &g.ca_pem)?;
            generated.push(format!("TLS certificate {} (trust {})", chain.display(), ca.display()));
        }
        (chain, key, ca)
    } else {
        (config.http.tls_cert.clone(), config.http.tls_key.clone(), config.http.tls_cert.clone())
    };

    let signing_path = if config.tokens.signing_key.as_os_str().is_empty() {
        let path = data_dir.join(SIGNING_KEY_FILE);
        create_dir(path.parent().expect("SIGNING_KEY_FILE is a path inside a directory"))?;
        ensure_file(&path, &mut generated, "token signing key", || Ok(SigningKey::generate_pem()?))?;
        path
    } else {
        config.tokens.signing_key.clone()
    };
    let current = SigningKey::from_file(&signing_path)?;
    let retired =
        config.tokens.retired_signing_keys.iter().map(|p| SigningKey::from_file(p)).collect::<Result<Vec<_>, _>>()?;

    let reset_path = data_dir.join(QUIC_RESET_KEY_FILE);
    let text = ensure_file(&reset_path, &mut generated, "QUIC stateless reset key", || {
        let mut key = [0u8; 64];
        aws_lc_rs::rand::fill(&mut key).map_err(|_| BootstrapError::Key(KeyError::Generate))?;
        Ok(format!("{}\n", B64.encode(key)))
    })?;
    let quic_reset_key =
        B64.decode(text.trim()).ok().filter(|k| k.len() >= 32).ok_or_else(|| BootstrapError::Corrupt {
            path: reset_path.display().to_string(),
            reason: "not the base64 of at least 32 bytes".to_owned(),
        })?;

    Ok(Prepared {
        quic_reset_key,
        db_path: data_dir.join(DB_FILE),
        data_dir,
        resource_id,
        access_keys,
        access_key_file,
        tls_chain,
        tls_key,
        tls_trust,
        keys: KeyRing::new(current, retired),
        generated,
    })
}

fn create_dir(dir: &Path) -> Result<(), BootstrapError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| BootstrapError::DataDir { path: dir.display().to_string(), reason: e.to_string() })
}

/// Read `path`, creating it with `make()` first if it does not exist. Creation is atomic (write a
/// temporary file, then hard-link it into place), so two processes starting at once agree on
/// one value.
fn ensure_file(
    path: &Path,
    generated: &mut Vec<String>,
    what: &str,
    make: impl FnOnce() -> Result<String, BootstrapError>,
) -> Result<String, BootstrapError> {
    if !path.exists() {
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        write_private(&tmp, &make()?)?;
        match std::fs::hard_link(&tmp, path) {
            Ok(()) => generated.push(format!("{what} {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(BootstrapError::Write { path: path.display().to_string(), reason: e.to_string() }),
        }
        let _ = std::fs::remove_file(&tmp);
    }
    std::fs::read_to_string(path)
        .map_err(|e| BootstrapError::Corrupt { path: path.display().to_string(), reason: e.to_string() })
}

/// Write a file readable only by its owner.
pub fn write_private(path: &Path, contents: &str) -> Result<(), BootstrapError> {
    let err = |e: std::io::Error| BootstrapError::Write { path: path.display().to_string(), reason: e.to_string() };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_start_generates_and_second_start_reuses() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = Config::default();
        config.server.data_dir = dir.path().join("data");
        let first = prepare(&config).expect("prepare");
        assert_eq!(first.generated.len(), 5, "{:?}", first.generated);
        assert_eq!(first.access_keys[0].len(), 64);
        let second = prepare(&config).expect("prepare again");
        assert!(second.generated.is_empty());
        assert_eq!(first.resource_id, second.resource_id);
        assert_eq!(first.access_keys, second.access_keys);
        assert_eq!(first.quic_reset_key.len(), 64);
        assert_eq!(first.quic_reset_key, second.quic_reset_key, "the reset key survives a restart");
        assert_eq!(first.keys.current().kid(), second.keys.current().kid());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(first.access_key_file.expect("generated")).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn corrupt_access_key_is_reported() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut config = Config::default();
        config.server.data_dir = dir.path().to_path_buf();
        std::fs::write(dir.path().join("access-key"), "@@@").expect("write");
        assert!(matches!(prepare(&config), Err(BootstrapError::Corrupt { .. })));
    }
}
