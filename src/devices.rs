//! Registered devices: the connected sessions of each identity. A client registers once (with
//! `register`, or implicitly with its first `join`) and stays registered while connected, in a
//! call or not; calls ring every device of the callee through this index, and a revocation
//! reaches exactly the devices of the identity it concerns.
//!
//! Each identity's entry carries a `watch` of its token status. A revocation or deletion updates
//! it once; every device of that identity sees the change, and nobody else wakes up.

use crate::identity::{IdentityDirectory, IdentityEvent, IdentityId};
use crate::lean_queue;
use crate::media::ids::SessionId;
use crate::rooms::EndReason;
use dashmap::DashMap;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

/// Notices queued for one device before it counts as unreachable.
pub const NOTICE_QUEUE: usize = 64;

/// Which of an identity's tokens are still good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    /// Tokens issued under this generation or later are valid.
    Current(u32),
    /// The identity was deleted: no token is valid.
    Deleted,
}

impl TokenStatus {
    /// Whether a token issued under `generation` is no longer valid.
    pub fn revokes(self, generation: u32) -> bool {
        match self {
            TokenStatus::Current(current) => current > generation,
            TokenStatus::Deleted => true,
        }
    }
}

/// A call ringing on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingCall {
    pub call: Uuid,
    pub caller: IdentityId,
    pub caller_raw_id: Arc<str>,
    pub caller_name: Option<Arc<str>>,
    /// An invitation into this group call (accepting joins it), not a call of its own.
    pub group: Option<Uuid>,
}

/// Something for a device that is not about a room it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceNotice {
    IncomingCall(Arc<IncomingCall>),
    /// The call stopped ringing on this device.
    IncomingCallEnded {
        call: Uuid,
        reason: EndReason,
    },
}

/// One connected device.
#[derive(Debug, Clone)]
pub struct Device {
    pub session: SessionId,
    pub notices: lean_queue::Sender<DeviceNotice>,
}

struct IdentityDevices {
    status: watch::Sender<TokenStatus>,
    devices: Vec<Device>,
}

/// Every registered device, by identity.
pub struct DeviceRegistry {
    by_identity: DashMap<IdentityId, IdentityDevices>,
    /// `switchboard_registered_devices`.
    gauge: prometheus::IntGauge,
}

/// A device's registration; unregisters when dropped.
pub struct Registration {
    registry: Arc<DeviceRegistry>,
    identity: IdentityId,
    session: SessionId,
    /// The identity's token status (changes on revocation or deletion).
    pub status: watch::Receiver<TokenStatus>,
}

impl Registration {
    pub fn identity(&self) -> IdentityId {
        self.identity
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.unregister(self.identity, self.session);
    }
}

impl DeviceRegistry {
    pub fn new(registry: &prometheus::Registry) -> Self {
        let gauge = prometheus::IntGauge::new("registered_devices", "Connected sessions registered as devices")
            .expect("constant gauge options are valid");
        registry.register(Box::new(gauge.clone())).expect("registered once");
        Self { by_identity: DashMap::new(), gauge }
    }

    /// Register a device of `identity` whose token carries `generation`. The caller must check the
    /// identity's current generation after this (a revocation just before registering is not in
    /// the returned status).
    pub fn register(self: &Arc<Self>, identity: IdentityId, device: Device, generation: u32) -> Registration {
        let session = device.session;
        let mut entry = self.by_identity.entry(identity).or_insert_with(|| IdentityDevices {
            status: watch::channel(TokenStatus::Current(generation)).0,
            devices: Vec::new(),
        });
        entry.devices.push(device);
        let status = entry.status.subscribe();
        drop(entry);
        self.gauge.inc();
        Registration { registry: self.clone(), identity, session, status }
    }

    fn unregister(&self, identity: IdentityId, session: SessionId) {
        let mut found = false;
        self.by_identity.remove_if_mut(&identity, |_, entry| {
            let before = entry.devices.len();
            entry.devices.retain(|d| d.session != session);
            found = entry.devices.len() < before;
            entry.devices.is_empty()
        });
        if found {
            self.gauge.dec();
        }
    }

    /// The connected devices of `identity`.
    pub fn devices_of(&self, identity: IdentityId) -> Vec<Device> {
        self.by_identity.get(&identity).map(|e| e.devices.clone()).unwrap_or_default()
    }

    /// How many devices are registered.
    pub fn len(&self) -> usize {
        self.by_identity.iter().map(|e| e.devices.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_identity.is_empty()
    }

    /// Tell the devices of the identity an event concerns (and only those).
    pub fn on_identity_event(&self, event: IdentityEvent) {
        let Some(entry) = self.by_identity.get(&event.id()) else { return };
        let new = match event {
            IdentityEvent::TokensRevoked { generation, .. } => TokenStatus::Current(generation),
            IdentityEvent::Deleted { .. } => TokenStatus::Deleted,
        };
        entry.status.send_if_modified(|current| {
            let newer = match (*current, new) {
                (TokenStatus::Deleted, _) => false,
                (_, TokenStatus::Deleted) => true,
                (TokenStatus::Current(a), TokenStatus::Current(b)) => b > a,
            };
            if newer {
                *current = new;
            }
            newer
        });
    }

    /// After missing identity events: ask the directory about every registered identity.
    pub fn recheck_all(&self, directory: &IdentityDirectory) {
        let ids: Vec<IdentityId> = self.by_identity.iter().map(|e| *e.key()).collect();
        for id in ids {
            let event = match directory.current_generation(id) {
                Ok(Some(generation)) => IdentityEvent::TokensRevoked { id, generation },
                Ok(None) => IdentityEvent::Deleted { id },
                Err(e) => {
                    tracing::warn!(error = %e, "cannot recheck an identity after missed revocations");
                    continue;
                }
            };
            self.on_identity_event(event);
        }
    }
}

/// Fan identity events out to the devices they concern, until `stop` (or the directory goes away).
pub async fn run_revocation_fanout(
    devices: Arc<DeviceRegistry>,
    directory: Arc<IdentityDirectory>,
    mut events: broadcast::Receiver<IdentityEvent>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            () = stop.cancelled() => return,
        };
        match event {
            Ok(event) => devices.on_identity_event(event),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "identity events missed; rechecking every registered identity");
                let (devices, directory) = (devices.clone(), directory.clone());
                let _ = tokio::task::spawn_blocking(move || devices.recheck_all(&directory)).await;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> (Device, lean_queue::Receiver<DeviceNotice>) {
        let (tx, rx) = lean_queue::channel(NOTICE_QUEUE);
        (Device { session: SessionId::next(), notices: tx }, rx)
    }

    #[test]
    fn devices_are_indexed_by_identity_and_leave_on_drop() {
        let registry = Arc::new(DeviceRegistry::new(&prometheus::Registry::new()));
        let (a, b) = (IdentityId(Uuid::new_v4()), IdentityId(Uuid::new_v4()));
        let (d1, _r1) = device();
        let (d2, _r2) = device();
        let (d3, _r3) = device();
        let reg1 = registry.register(a, d1.clone(), 0);
        let reg2 = registry.register(a, d2, 0);
        let _reg3 = registry.register(b, d3, 0);
        assert_eq!(registry.devices_of(a).len(), 2);
        assert_eq!(registry.len(), 3);
        drop(reg2);
        assert_eq!(registry.devices_of(a).iter().map(|d| d.session).collect::<Vec<_>>(), vec![d1.session]);
        drop(reg1);
        assert!(registry.devices_of(a).is_empty());
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.gauge.get(), 1);
    }

    #[test]
    fn a_revocation_wakes_only_the_devices_of_its_identity() {
        let registry = Arc::new(DeviceRegistry::new(&prometheus::Registry::new()));
        let (a, b) = (IdentityId(Uuid::new_v4()), IdentityId(Uuid::new_v4()));
        let (da, _) = device();
        let (db, _) = device();
        let mut ra = registry.register(a, da, 3);
        let mut rb = registry.register(b, db, 0);
        registry.on_identity_event(IdentityEvent::TokensRevoked { id: a, generation: 4 });
        assert!(ra.status.has_changed().expect("sender alive"));
        assert!(!rb.status.has_changed().expect("sender alive"), "b is not woken");
        assert!(ra.status.borrow_and_update().revokes(3));
        assert!(!TokenStatus::Current(4).revokes(4), "tokens of the new generation stay valid");
        // An older event never lowers the generation; a deletion is final.
        registry.on_identity_event(IdentityEvent::TokensRevoked { id: a, generation: 2 });
        assert!(!ra.status.has_changed().expect("sender alive"));
        registry.on_identity_event(IdentityEvent::Deleted { id: a });
        registry.on_identity_event(IdentityEvent::TokensRevoked { id: a, generation: 9 });
        assert_eq!(*ra.status.borrow_and_update(), TokenStatus::Deleted);
        assert!(!rb.status.borrow_and_update().revokes(0));
    }
}
