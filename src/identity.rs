//! Communication identities: their raw IDs (`8:acs:<resourceId>_<uuid>`) and the
//! `IdentityDirectory`, the in-memory view of which identities exist and which token generation
//! is current, in front of the store. Every join path asks the directory, so revoking or deleting
//! takes effect at once; open connections learn of it through `IdentityEvent`s.

use crate::store::{IdentityRecord, Store, StoreError};
use dashmap::DashMap;
use std::fmt;
use std::sync::Arc;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Prefix of a communication user raw ID.
pub const RAW_ID_PREFIX: &str = "8:acs:";

/// The UUID part of a communication identity; the resource ID is the same for the whole server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityId(pub Uuid);

/// Why a raw ID was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RawIdError {
    #[error("not a communication user ID (expected 8:acs:<resourceId>_<uuid>)")]
    Malformed,
    #[error("the ID belongs to another resource")]
    ForeignResource,
}

impl IdentityId {
    /// The raw ID clients and SDKs see.
    pub fn raw(&self, resource_id: &str) -> String {
        format!("{RAW_ID_PREFIX}{resource_id}_{}", self.0)
    }

    /// Parse a raw ID that must belong to `resource_id`.
    pub fn parse_raw(raw: &str, resource_id: &str) -> Result<Self, RawIdError> {
        let rest = raw.strip_prefix(RAW_ID_PREFIX).ok_or(RawIdError::Malformed)?;
        let (resource, uuid) = rest.rsplit_once('_').ok_or(RawIdError::Malformed)?;
        let uuid = Uuid::parse_str(uuid).map_err(|_| RawIdError::Malformed)?;
        if !resource.eq_ignore_ascii_case(resource_id) {
            return Err(RawIdError::ForeignResource);
        }
        Ok(Self(uuid))
    }
}

impl fmt::Display for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a token being issued learns about its identity, read in the same statement that records
/// the issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The revocation generation the token carries.
    pub generation: u32,
    /// The identity's externalId: its organization membership is decided from it.
    pub external_id: Option<String>,
}

/// Something that changed an identity's right to stay connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityEvent {
    /// Tokens issued under a generation below `generation` are no longer valid.
    TokensRevoked { id: IdentityId, generation: u32 },
    /// The identity is gone; none of its tokens are valid.
    Deleted { id: IdentityId },
}

impl IdentityEvent {
    pub fn id(&self) -> IdentityId {
        match self {
            IdentityEvent::TokensRevoked { id, .. } | IdentityEvent::Deleted { id } => *id,
        }
    }
}

/// What the directory knows of an identity's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Tokens below this generation are revoked.
    Live(u32),
    /// Deleted: no token of it verifies again (IDs are random UUIDs, never reused).
    Deleted,
}

/// The live view of identities. Token generations are cached; a miss reads the store (an
/// identity created by the CLI on the same data directory is found that way).
///
/// Store calls and cache updates of concurrent requests interleave (a read of the store can
/// finish before a revoke and update the cache after it), so the cache only moves forward: a
/// generation only goes up, and a deletion is remembered and never undone. Whatever the order
/// of the updates, the cache ends at the newest state any of them saw.
pub struct IdentityDirectory {
    /// Shared with the `RoomDirectory`: one SQLite connection for the whole server.
    store: Arc<Store>,
    known: DashMap<IdentityId, Known>,
    events: broadcast::Sender<IdentityEvent>,
}

impl IdentityDirectory {
    /// Takes the store, or a share of it (`Arc<Store>`) when other services use it too.
    pub fn new(store: impl Into<Arc<Store>>) -> Self {
        let (events, _) = broadcast::channel(1024);
        Self { store: store.into(), known: DashMap::new(), events }
    }

    /// Subscribe to revocations and deletions (connection handlers disconnect on them).
    pub fn subscribe(&self) -> broadcast::Receiver<IdentityEvent> {
        self.events.subscribe()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Note generation `g` of a live identity: raises the cached one, never lowers it, never
    /// revives a deleted identity. Returns what the cache holds now.
    fn raise(&self, id: IdentityId, g: u32) -> Known {
        let mut entry = self.known.entry(id).or_insert(Known::Live(g));
        if let Known::Live(cached) = *entry
            && g > cached
        {
            *entry = Known::Live(g);
        }
        *entry
    }

    fn forget(&self, id: IdentityId) {
        self.known.insert(id, Known::Deleted);
    }

    /// Create an identity (idempotent by `external_id`).
    pub fn create(&self, external_id: Option<&str>, now_ms: i64) -> Result<(IdentityRecord, bool), StoreError> {
        let (record, created) = self.store.create_identity(external_id, now_ms)?;
        self.raise(IdentityId(record.id), record.token_generation);
        Ok((record, created))
    }

    pub fn get(&self, id: IdentityId) -> Result<Option<IdentityRecord>, StoreError> {
        self.store.identity(id.0)
    }

    /// Delete an identity; its tokens stop verifying before this returns.
    pub fn delete(&self, id: IdentityId) -> Result<bool, StoreError> {
        let existed = self.store.delete_identity(id.0)?;
        self.forget(id);
        if existed {
            // No receivers is fine: nobody is connected.
            let _ = self.events.send(IdentityEvent::Deleted { id });
        }
        Ok(existed)
    }

    /// Revoke every token issued so far; they stop verifying before this returns.
    pub fn revoke_tokens(&self, id: IdentityId) -> Result<bool, StoreError> {
        match self.store.revoke_tokens(id.0)? {
            Some(generation) => {
                self.raise(id, generation);
                let _ = self.events.send(IdentityEvent::TokensRevoked { id, generation });
                Ok(true)
            }
            None => {
                self.forget(id);
                Ok(false)
            }
        }
    }

    /// Record a token issue; returns what the token must carry (`None`: unknown identity).
    pub fn note_token_issued(&self, id: IdentityId, now_ms: i64) -> Result<Option<TokenGrant>, StoreError> {
        let issued = self.store.note_token_issued(id.0, now_ms)?;
        Ok(issued.map(|(generation, external_id)| {
            // The token carries the generation it was issued under; a revoke that raced it may
            // already have raised the cache (then this token is born revoked, as it should be).
            self.raise(id, generation);
            TokenGrant { generation, external_id }
        }))
    }

    /// The current token generation of a live identity, `None` when it does not exist.
    /// Forget every cached generation, as after a restart: the next check of each identity reads
    /// the store (tests of store reads on the join path).
    #[doc(hidden)]
    pub fn forget_cached(&self) {
        self.known.clear();
    }

    pub fn current_generation(&self, id: IdentityId) -> Result<Option<u32>, StoreError> {
        if let Some(known) = self.known.get(&id).map(|k| *k) {
            return Ok(match known {
                Known::Live(g) => Some(g),
                Known::Deleted => None,
            });
        }
        // A miss. The answer is what the cache holds after noting the store's: a revoke or a
        // delete that finished while the store was read is not undone.
        Ok(match self.store.identity(id.0)?.map(|r| r.token_generation) {
            Some(g) => match self.raise(id, g) {
                Known::Live(g) => Some(g),
                Known::Deleted => None,
            },
            None => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RES: &str = "1b2c3d4e-0000-4000-8000-000000000001";

    #[test]
    fn raw_id_round_trip_and_errors() {
        let id = IdentityId(Uuid::new_v4());
        let raw = id.raw(RES);
        assert!(raw.starts_with("8:acs:1b2c3d4e-"));
        assert_eq!(IdentityId::parse_raw(&raw, RES), Ok(id));
        assert_eq!(IdentityId::parse_raw("8:acs:x", RES), Err(RawIdError::Malformed));
        assert_eq!(IdentityId::parse_raw("", RES), Err(RawIdError::Malformed));
        assert_eq!(IdentityId::parse_raw("8:acs:a_b", RES), Err(RawIdError::Malformed));
        let foreign = format!("8:acs:other_{}", id.0);
        assert_eq!(IdentityId::parse_raw(&foreign, RES), Err(RawIdError::ForeignResource));
    }

    #[test]
    fn revocation_is_visible_immediately_and_announced() {
        let dir = IdentityDirectory::new(Store::open_in_memory().expect("db"));
        let mut events = dir.subscribe();
        let (rec, _) = dir.create(None, 0).expect("create");
        let id = IdentityId(rec.id);
        assert_eq!(dir.current_generation(id).expect("gen"), Some(0));
        assert!(dir.revoke_tokens(id).expect("revoke"));
        assert_eq!(dir.current_generation(id).expect("gen"), Some(1));
        assert_eq!(events.try_recv().expect("event"), IdentityEvent::TokensRevoked { id, generation: 1 });
        assert!(dir.delete(id).expect("delete"));
        assert_eq!(dir.current_generation(id).expect("gen"), None);
        assert_eq!(events.try_recv().expect("event"), IdentityEvent::Deleted { id });
    }

    /// Revokes, issues, deletes and reads race on many identities; afterwards the directory must
    /// agree with the store: never an older generation (a revoked token would verify) and never
    /// a deleted identity (its tokens would verify). Identities are created in the store behind
    /// the directory's back, so the first reads also race as cache misses.
    #[test]
    fn concurrent_revoke_issue_delete_never_undo_each_other() {
        let store = Arc::new(Store::open_in_memory().expect("db"));
        let dir = Arc::new(IdentityDirectory::new(store.clone()));
        let ids: Vec<IdentityId> =
            (0..600).map(|_| IdentityId(store.create_identity(None, 0).expect("create").0.id)).collect();
        let ids = Arc::new(ids);
        let threads: Vec<_> = (0..6)
            .map(|t| {
                let (dir, ids) = (dir.clone(), ids.clone());
                std::thread::spawn(move || {
                    for round in 0..20 {
                        for (i, id) in ids.iter().enumerate() {
                            match (t + i + round) % 6 {
                                0 | 1 => drop(dir.current_generation(*id).expect("read")),
                                2 | 3 => drop(dir.note_token_issued(*id, 0).expect("issue")),
                                4 => drop(dir.revoke_tokens(*id).expect("revoke")),
                                // A few identities are deleted part way through.
                                _ if i % 10 == 0 && round == 10 => drop(dir.delete(*id).expect("delete")),
                                _ => drop(dir.current_generation(*id).expect("read")),
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no thread panicked");
        }
        for id in ids.iter() {
            let stored = store.identity(id.0).expect("read").map(|r| r.token_generation);
            assert_eq!(dir.current_generation(*id).expect("read"), stored, "{id}");
        }
    }
}
