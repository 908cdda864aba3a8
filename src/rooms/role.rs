//! Roles and what they allow. A participant's role (from an ACS Room's participant list, or the
//! fixed role of a group or 1:1 call) decides its `Capabilities`: which sources it may publish,
//! whether it receives media, and whether it may mute or remove others. The same capabilities are
//! pushed to the media worker as the session's admission, so the media plane enforces them too.

use crate::sfu::packet::MediaKind;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An ACS Rooms participant role (`api-version=2024-04-15`), as the REST API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Publishes anything; may mute and remove others.
    Presenter,
    /// Publishes audio and camera video; no screen sharing.
    Attendee,
    /// Receives only.
    Consumer,
    /// Publishes anything; no moderation.
    Collaborator,
}

/// A role name that is not one of the four ACS roles.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}` (allowed: Presenter, Attendee, Consumer, Collaborator)")]
pub struct UnknownRole(pub String);

impl Role {
    pub const ALL: [Role; 4] = [Role::Presenter, Role::Attendee, Role::Consumer, Role::Collaborator];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Presenter => "Presenter",
            Role::Attendee => "Attendee",
            Role::Consumer => "Consumer",
            Role::Collaborator => "Collaborator",
        }
    }

    /// Parse a role name (case-insensitive, as ACS accepts it).
    pub fn parse(name: &str) -> Result<Role, UnknownRole> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| UnknownRole(name.to_owned()))
    }

    pub fn capabilities(self) -> Capabilities {
        match self {
            Role::Presenter => Capabilities { publish: Sources::ALL, receive: true, moderate: true },
            Role::Collaborator => Capabilities { publish: Sources::ALL, receive: true, moderate: false },
            Role::Attendee => {
                Capabilities { publish: Sources::MICROPHONE.with(Sources::CAMERA), receive: true, moderate: false }
            }
            Role::Consumer => Capabilities { publish: Sources::NONE, receive: true, moderate: false },
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a track carries, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum TrackSource {
    /// Audio from a microphone (the default for audio).
    #[default]
    Microphone,
    /// Video from a camera (the default for video).
    Camera,
    /// A shared screen or window (video).
    Screen,
}

impl TrackSource {
    /// The source a track has when the client names none.
    pub fn default_for(kind: MediaKind) -> TrackSource {
        match kind {
            MediaKind::Audio => TrackSource::Microphone,
            MediaKind::Video => TrackSource::Camera,
        }
    }

    /// Whether a track of `kind` can carry this source (a screen is video; a microphone audio).
    pub fn fits(self, kind: MediaKind) -> bool {
        matches!(
            (self, kind),
            (TrackSource::Microphone, MediaKind::Audio) | (TrackSource::Camera | TrackSource::Screen, MediaKind::Video)
        )
    }

    fn bit(self) -> u8 {
        match self {
            TrackSource::Microphone => 1,
            TrackSource::Camera => 2,
            TrackSource::Screen => 4,
        }
    }
}

/// A set of track sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sources(u8);

impl Sources {
    pub const NONE: Sources = Sources(0);
    pub const MICROPHONE: Sources = Sources(1);
    pub const CAMERA: Sources = Sources(2);
    pub const SCREEN: Sources = Sources(4);
    pub const ALL: Sources = Sources(7);

    pub const fn with(self, other: Sources) -> Sources {
        Sources(self.0 | other.0)
    }

    pub fn contains(self, source: TrackSource) -> bool {
        self.0 & source.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Source names in a fixed order (for messages and logs).
    pub fn names(self) -> Vec<TrackSource> {
        [TrackSource::Microphone, TrackSource::Camera, TrackSource::Screen]
            .into_iter()
            .filter(|s| self.contains(*s))
            .collect()
    }
}

/// What a participant may do in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capabilities {
    /// Sources it may publish.
    pub publish: Sources,
    /// Whether it receives media.
    pub receive: bool,
    /// Whether it may mute or remove others.
    pub moderate: bool,
}

impl Capabilities {
    /// Everything but moderation: a group call or 1:1 call participant.
    pub const PARTICIPANT: Capabilities = Capabilities { publish: Sources::ALL, receive: true, moderate: false };
    /// Nothing at all (not admitted).
    pub const NONE: Capabilities = Capabilities { publish: Sources::NONE, receive: false, moderate: false };

    pub fn may_publish(self, source: TrackSource) -> bool {
        self.publish.contains(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_print_as_acs_does() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
            assert_eq!(serde_json::to_string(&r).expect("json"), format!("\"{r}\""));
        }
        assert_eq!(Role::parse("presenter"), Ok(Role::Presenter));
        assert!(Role::parse("Organizer").is_err());
    }

    #[test]
    fn capabilities_follow_the_acs_role_table() {
        let c = Role::Consumer.capabilities();
        assert!(c.receive && c.publish.is_empty() && !c.moderate);
        let a = Role::Attendee.capabilities();
        assert!(a.may_publish(TrackSource::Microphone) && a.may_publish(TrackSource::Camera));
        assert!(!a.may_publish(TrackSource::Screen));
        assert!(Role::Presenter.capabilities().moderate);
        assert!(!Role::Collaborator.capabilities().moderate);
        assert!(Role::Collaborator.capabilities().may_publish(TrackSource::Screen));
    }

    #[test]
    fn sources_fit_kinds() {
        assert!(TrackSource::Screen.fits(MediaKind::Video));
        assert!(!TrackSource::Screen.fits(MediaKind::Audio));
        assert!(!TrackSource::Microphone.fits(MediaKind::Video));
        assert_eq!(TrackSource::default_for(MediaKind::Audio), TrackSource::Microphone);
        assert_eq!(serde_json::to_string(&TrackSource::Screen).expect("json"), "\"screen\"");
    }
}
