//! Identifiers of live objects. All come from one process-wide counter, so they are unique across
//! kinds and never reused while the process runs.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};

static NEXT: AtomicU64 = AtomicU64::new(1);

fn next() -> u64 {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub u64);

        impl $name {
            /// A fresh, never used ID.
            pub fn next() -> Self {
                Self(next())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// One client connection (QUIC connection or WebRTC peer with its signaling).
    SessionId
);
id_type!(
    /// A room (group call, invite-only room, 1:1 call or meeting) while it is live.
    RoomId
);
id_type!(
    /// A participant in a room.
    ParticipantId
);
id_type!(
    /// A published track.
    TrackId
);
id_type!(
    /// One subscriber's subscription to one track.
    SubscriptionId
);
