//! The rules of a meeting, as pure functions: who skips the lobby (`LobbyBypassScope::bypasses`)
//! and who may present (`AllowedPresenters::presents`), for a `Joiner` described by facts the
//! join path already has (the token's `org` claim, the meeting's organizer and attendee list).
//!
//! The enums keep Microsoft Graph's wire names (`lobbyBypassScope`, `onlineMeetingPresenters`,
//! `onlineMeetingRole`), so the REST API reads and writes them as Graph does; Graph's
//! `unknownFutureValue` sentinel is not a value anybody may set.

use crate::identity::IdentityId;
use crate::organization::OrgStatus;
use std::fmt;

/// A name that is not one of an enum's wire values; says which values are allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{given}' is not a valid {what}; allowed: {allowed}")]
pub struct UnknownValue {
    pub given: String,
    pub what: &'static str,
    pub allowed: String,
}

/// Wire names, parsed case-insensitively (as the Rooms API does with roles) and written exactly.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident = $wire:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// Every value, in Graph's documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wire,)+
                }
            }

            /// Parse a wire name (ASCII case-insensitively).
            pub fn parse(s: &str) -> Result<Self, UnknownValue> {
                Self::ALL.iter().copied().find(|v| v.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| UnknownValue {
                    given: s.to_owned(),
                    what: $what,
                    allowed: Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// A listed participant's role (Graph `onlineMeetingRole`).
    MeetingRole, "role", {
        /// The default.
        #[default]
        Attendee = "attendee",
        /// Presents when the meeting's `allowedPresenters` is `roleIsPresenter`.
        Presenter = "presenter",
        /// Graph: Teams live events only; here a presenting role like `presenter`.
        Producer = "producer",
        /// A co-organizer; a presenting role.
        Coorganizer = "coorganizer",
    }
);

wire_enum!(
    /// Who is admitted directly, skipping the lobby (Graph `lobbyBypassScope`).
    LobbyBypassScope, "lobby bypass scope", {
        /// Only the organizer.
        Organizer = "organizer",
        /// Members of the organization and its guests. The default: Graph answers it for a
        /// meeting created without lobby settings (Teams' "people in my organization and guests").
        #[default]
        Organization = "organization",
        /// Members, guests and users of federated organizations.
        OrganizationAndFederated = "organizationAndFederated",
        /// Everybody, external identities included.
        Everyone = "everyone",
        /// The identities the meeting lists (its attendees).
        Invited = "invited",
        /// Members of the organization only.
        OrganizationExcludingGuests = "organizationExcludingGuests",
    }
);

wire_enum!(
    /// Who may present (Graph `onlineMeetingPresenters`).
    AllowedPresenters, "allowedPresenters value", {
        /// Everybody. The default (Graph: "This is default option").
        #[default]
        Everyone = "everyone",
        /// Members of the organizer's organization and its guests.
        Organization = "organization",
        /// Listed participants whose role presents (`presenter`, `coorganizer`, `producer`).
        RoleIsPresenter = "roleIsPresenter",
        /// Only the organizer.
        Organizer = "organizer",
    }
);

impl MeetingRole {
    /// Whether a participant with this role presents under `roleIsPresenter`.
    pub fn presents(self) -> bool {
        !matches!(self, MeetingRole::Attendee)
    }
}

/// Somebody joining a meeting, described by what the join path knows without a lookup: the
/// token's identity and `org` claim, and the meeting record (`MeetingRecord::joiner` fills it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Joiner {
    pub identity: IdentityId,
    /// From the token's `org` claim.
    pub org: OrgStatus,
    /// The meeting's organizer.
    pub is_organizer: bool,
    /// Listed among the meeting's attendees.
    pub invited: bool,
    /// The role the meeting lists for this identity (`Attendee` when it is not listed).
    pub role: MeetingRole,
}

impl LobbyBypassScope {
    /// Whether `who` joins directly instead of waiting in the lobby. The organizer always does;
    /// an external identity only under `everyone`, or under `invited` when it is listed.
    pub fn bypasses(self, who: &Joiner) -> bool {
        if who.is_organizer {
            return true;
        }
        match self {
            LobbyBypassScope::Organizer => false,
            LobbyBypassScope::OrganizationExcludingGuests => who.org == OrgStatus::Member,
            LobbyBypassScope::Organization => matches!(who.org, OrgStatus::Member | OrgStatus::Guest),
            LobbyBypassScope::OrganizationAndFederated => {
                matches!(who.org, OrgStatus::Member | OrgStatus::Guest | OrgStatus::Federated)
            }
            LobbyBypassScope::Invited => who.invited,
            LobbyBypassScope::Everyone => true,
        }
    }
}

impl AllowedPresenters {
    /// Whether `who` may present (share screen, publish as a presenter). The organizer always
    /// may; under `roleIsPresenter`, listed participants whose role presents.
    pub fn presents(self, who: &Joiner) -> bool {
        if who.is_organizer {
            return true;
        }
        match self {
            AllowedPresenters::Everyone => true,
            AllowedPresenters::Organization => matches!(who.org, OrgStatus::Member | OrgStatus::Guest),
            AllowedPresenters::RoleIsPresenter => who.invited && who.role.presents(),
            AllowedPresenters::Organizer => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    /// The kinds of joiner the rules distinguish.
    #[derive(Debug, Clone, Copy)]
    enum Kind {
        Organizer,
        Member,
        Guest,
        Federated,
        External,
        InvitedMember,
        InvitedExternal,
        InvitedExternalPresenter,
        InvitedGuestCoorganizer,
    }

    const KINDS: [Kind; 9] = [
        Kind::Organizer,
        Kind::Member,
        Kind::Guest,
        Kind::Federated,
        Kind::External,
        Kind::InvitedMember,
        Kind::InvitedExternal,
        Kind::InvitedExternalPresenter,
        Kind::InvitedGuestCoorganizer,
    ];

    fn joiner(kind: Kind) -> Joiner {
        let (org, is_organizer, invited, role) = match kind {
            // An organizer with no org claim at all: it still bypasses and presents.
            Kind::Organizer => (OrgStatus::External, true, false, MeetingRole::Attendee),
            Kind::Member => (OrgStatus::Member, false, false, MeetingRole::Attendee),
            Kind::Guest => (OrgStatus::Guest, false, false, MeetingRole::Attendee),
            Kind::Federated => (OrgStatus::Federated, false, false, MeetingRole::Attendee),
            Kind::External => (OrgStatus::External, false, false, MeetingRole::Attendee),
            Kind::InvitedMember => (OrgStatus::Member, false, true, MeetingRole::Attendee),
            Kind::InvitedExternal => (OrgStatus::External, false, true, MeetingRole::Attendee),
            Kind::InvitedExternalPresenter => (OrgStatus::External, false, true, MeetingRole::Presenter),
            Kind::InvitedGuestCoorganizer => (OrgStatus::Guest, false, true, MeetingRole::Coorganizer),
        };
        Joiner { identity: IdentityId(Uuid::new_v4()), org, is_organizer, invited, role }
    }

    /// Every scope × every kind of joiner, against a table written from SPEC §2 and Graph's
    /// `lobbyBypassScope` descriptions. Columns follow `KINDS`.
    #[test]
    fn lobby_bypass_table() {
        use LobbyBypassScope as S;
        #[rustfmt::skip]
        let table: [(S, [bool; 9]); 6] = [
            //                                org    mem    guest  fed    ext    inv-m  inv-x  inv-xp inv-gc
            (S::Organizer,                   [true,  false, false, false, false, false, false, false, false]),
            (S::Organization,                [true,  true,  true,  false, false, true,  false, false, true ]),
            (S::OrganizationExcludingGuests, [true,  true,  false, false, false, true,  false, false, false]),
            (S::OrganizationAndFederated,    [true,  true,  true,  true,  false, true,  false, false, true ]),
            (S::Invited,                     [true,  false, false, false, false, true,  true,  true,  true ]),
            (S::Everyone,                    [true,  true,  true,  true,  true,  true,  true,  true,  true ]),
        ];
        assert_eq!(table.len(), S::ALL.len(), "every scope has a row");
        for (scope, expected) in table {
            for (kind, want) in KINDS.iter().zip(expected) {
                assert_eq!(scope.bypasses(&joiner(*kind)), want, "{scope} × {kind:?}");
            }
        }
    }

    #[test]
    fn external_identities_bypass_only_under_everyone_or_when_invited_under_invited() {
        for scope in LobbyBypassScope::ALL {
            let stranger = scope.bypasses(&joiner(Kind::External));
            assert_eq!(stranger, *scope == LobbyBypassScope::Everyone, "{scope}");
            let invited = scope.bypasses(&joiner(Kind::InvitedExternal));
            assert_eq!(invited, matches!(scope, LobbyBypassScope::Everyone | LobbyBypassScope::Invited), "{scope}");
        }
    }

    #[test]
    fn presenters_table() {
        use AllowedPresenters as P;
        #[rustfmt::skip]
        let table: [(P, [bool; 9]); 4] = [
            //                     org    mem    guest  fed    ext    inv-m  inv-x  inv-xp inv-gc
            (P::Everyone,        [true,  true,  true,  true,  true,  true,  true,  true,  true ]),
            (P::Organization,    [true,  true,  true,  false, false, true,  false, false, true ]),
            (P::RoleIsPresenter, [true,  false, false, false, false, false, false, true,  true ]),
            (P::Organizer,       [true,  false, false, false, false, false, false, false, false]),
        ];
        assert_eq!(table.len(), P::ALL.len(), "every value has a row");
        for (presenters, expected) in table {
            for (kind, want) in KINDS.iter().zip(expected) {
                assert_eq!(presenters.presents(&joiner(*kind)), want, "{presenters} × {kind:?}");
            }
        }
        assert!(MeetingRole::Producer.presents() && !MeetingRole::Attendee.presents());
    }

    #[test]
    fn wire_names_are_graphs_and_parse_case_insensitively() {
        let scopes: Vec<_> = LobbyBypassScope::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            scopes,
            [
                "organizer",
                "organization",
                "organizationAndFederated",
                "everyone",
                "invited",
                "organizationExcludingGuests"
            ]
        );
        let presenters: Vec<_> = AllowedPresenters::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(presenters, ["everyone", "organization", "roleIsPresenter", "organizer"]);
        let roles: Vec<_> = MeetingRole::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(roles, ["attendee", "presenter", "producer", "coorganizer"]);
        for scope in LobbyBypassScope::ALL {
            assert_eq!(LobbyBypassScope::parse(&scope.as_str().to_ascii_uppercase()), Ok(*scope));
        }
        let e = LobbyBypassScope::parse("unknownFutureValue").expect_err("the sentinel is not a value");
        assert!(e.to_string().contains("organizationExcludingGuests"), "lists what is allowed: {e}");
        assert!(AllowedPresenters::parse("").is_err());
        assert_eq!(MeetingRole::parse("Presenter"), Ok(MeetingRole::Presenter));
        assert_eq!(
            (LobbyBypassScope::default(), AllowedPresenters::default(), MeetingRole::default()),
            (LobbyBypassScope::Organization, AllowedPresenters::Everyone, MeetingRole::Attendee)
        );
    }
}
