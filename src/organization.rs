//! Who belongs to the organization that runs this server. Meetings let members (and, depending on
//! a meeting's settings, guests and federated organizations) skip the lobby; everybody else is an
//! external identity that waits to be admitted.
//!
//! Membership is configuration (`[organization]`), not state: listed raw IDs and externalId
//! patterns such as `*@contoso.com`. `OrgPolicy::classify` turns an identity into an `OrgStatus`
//! when a token is issued; the token carries it as its `org` claim, so a join decides without a
//! lookup. The price: a configuration change reaches an identity with its next token.
//!
//! Parse, don't validate: the config tree holds `ConfiguredUser`s and `ExternalIdPattern`s that
//! were checked while the config was read, so a bad entry stops start-up naming its key.

use crate::identity::{IdentityId, RAW_ID_PREFIX};
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use uuid::Uuid;

/// Longest accepted externalId pattern (the identity API accepts externalIds of up to 256).
pub const MAX_PATTERN_LEN: usize = 256;

/// Where an identity stands toward the organization. The variants are not ordered: each rule
/// (`meeting_policy`) names the ones it admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OrgStatus {
    /// A member of the organization.
    Member,
    /// A guest of the organization (an outsider the organization has taken in).
    Guest,
    /// A member of a federated (trusted) organization.
    Federated,
    /// Anybody else. Also what a token without an `org` claim is: tokens issued before the claim
    /// existed stay valid and get the least trust.
    #[default]
    External,
}

impl OrgStatus {
    /// The value of the `org` token claim; `None` (no claim) for `External`.
    pub fn claim(self) -> Option<&'static str> {
        match self {
            OrgStatus::Member => Some("member"),
            OrgStatus::Guest => Some("guest"),
            OrgStatus::Federated => Some("federated"),
            OrgStatus::External => None,
        }
    }

    /// Read an `org` claim. No claim, and a value this server does not know (a token from a newer
    /// version, say), read as `External`: an unknown claim must never grant more.
    pub fn from_claim(claim: Option<&str>) -> Self {
        match claim {
            Some("member") => OrgStatus::Member,
            Some("guest") => OrgStatus::Guest,
            Some("federated") => OrgStatus::Federated,
            _ => OrgStatus::External,
        }
    }
}

/// A communication user listed in the config (`organization.members`, `organization.guests`):
/// a raw ID `8:acs:<resourceId>_<uuid>`. Whether its resource is this server's is checked once the
/// resource ID is known (`OrgPolicy::new`), because it may be generated on first start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ConfiguredUser {
    resource: String,
    id: IdentityId,
}

impl ConfiguredUser {
    pub fn id(&self) -> IdentityId {
        self.id
    }

    pub fn resource(&self) -> &str {
        &self.resource
    }
}

impl TryFrom<String> for ConfiguredUser {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, Self::Error> {
        let malformed = || format!("`{raw}` is not a communication user ID (expected 8:acs:<resourceId>_<uuid>)");
        let rest = raw.strip_prefix(RAW_ID_PREFIX).ok_or_else(malformed)?;
        let (resource, uuid) = rest.rsplit_once('_').ok_or_else(malformed)?;
        let uuid = Uuid::parse_str(uuid).map_err(|_| malformed())?;
        if resource.is_empty() {
            return Err(malformed());
        }
        Ok(Self { resource: resource.to_owned(), id: IdentityId(uuid) })
    }
}

/// An externalId pattern: either an exact externalId (`ada@contoso.com`) or a leading `*`
/// followed by `@` or `.` and a domain (`*@contoso.com`, `*.contoso.com`). Matching ignores ASCII
/// case (domains are ASCII; folding other scripts would let look-alike characters match).
///
/// Why the wildcard must be followed by `@` or `.`: `*contoso.com` would also match
/// `mallory@notcontoso.com`, an easy way to let strangers skip lobbies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ExternalIdPattern {
    /// The pattern as configured (for messages).
    text: String,
    /// What a matching externalId ends with (`Wildcard`) or is (`Exact`).
    kind: PatternKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternKind {
    Exact(String),
    /// Matches an externalId that ends with the suffix and has at least one character before it.
    Wildcard(String),
}

impl ExternalIdPattern {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `external_id` matches (ASCII case-insensitively).
    pub fn matches(&self, external_id: &str) -> bool {
        match &self.kind {
            PatternKind::Exact(exact) => external_id.eq_ignore_ascii_case(exact),
            PatternKind::Wildcard(suffix) => {
                let (id, suffix) = (external_id.as_bytes(), suffix.as_bytes());
                id.len() > suffix.len() && id[id.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

impl TryFrom<String> for ExternalIdPattern {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let bad = |why: &str| format!("`{text}` is not an externalId pattern: {why}");
        if text.is_empty() || text.len() > MAX_PATTERN_LEN {
            return Err(bad(&format!("it must be 1 to {MAX_PATTERN_LEN} bytes")));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("it contains whitespace or control characters"));
        }
        let kind = match text.strip_prefix('*') {
            None => PatternKind::Exact(text.clone()),
            Some(suffix) => {
                if !(suffix.starts_with('@') || suffix.starts_with('.')) || suffix.len() < 2 {
                    return Err(bad("a leading * must be followed by @ or . and a domain, as in *@contoso.com"));
                }
                PatternKind::Wildcard(suffix.to_owned())
            }
        };
        let rest = match &kind {
            PatternKind::Exact(s) | PatternKind::Wildcard(s) => s,
        };
        if rest.contains('*') {
            return Err(bad("* is allowed only as the first character"));
        }
        Ok(Self { text, kind })
    }
}

impl fmt::Display for ExternalIdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The `[organization]` config section as `OrgPolicy::new` reads it.
#[derive(Debug, Clone, Copy)]
pub struct OrgLists<'a> {
    pub members: &'a [ConfiguredUser],
    pub member_domains: &'a [ExternalIdPattern],
    pub guests: &'a [ConfiguredUser],
    pub guest_domains: &'a [ExternalIdPattern],
    pub federated_domains: &'a [ExternalIdPattern],
}

/// A configured user of another resource: it could never match anyone, so it is a mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: `{raw}` belongs to resource {resource}, not to this server's resource {expected}")]
pub struct ForeignConfiguredUser {
    /// The config key, e.g. `organization.members`.
    pub key: &'static str,
    pub raw: String,
    pub resource: String,
    pub expected: String,
}

/// Classifies identities as members, guests, federated or external.
#[derive(Debug, Clone, Default)]
pub struct OrgPolicy {
    members: HashSet<IdentityId>,
    guests: HashSet<IdentityId>,
    member_domains: Vec<ExternalIdPattern>,
    guest_domains: Vec<ExternalIdPattern>,
    federated_domains: Vec<ExternalIdPattern>,
}

impl OrgPolicy {
    /// The policy for a server whose resource ID is `resource_id`. Listed users of another
    /// resource are refused (naming the key), as they could never match.
    pub fn new(lists: OrgLists<'_>, resource_id: &str) -> Result<Self, ForeignConfiguredUser> {
        Ok(Self {
            members: users(lists.members, resource_id, "organization.members")?,
            guests: users(lists.guests, resource_id, "organization.guests")?,
            member_domains: lists.member_domains.to_vec(),
            guest_domains: lists.guest_domains.to_vec(),
            federated_domains: lists.federated_domains.to_vec(),
        })
    }

    /// Classify an identity by its ID and its externalId (if it has one). Explicit lists win over
    /// patterns, and at each level a member entry wins over a guest entry, which wins over a
    /// federated pattern:
    /// `members` > `guests` > `member_domains` > `guest_domains` > `federated_domains`.
    pub fn classify(&self, identity: IdentityId, external_id: Option<&str>) -> OrgStatus {
        if self.members.contains(&identity) {
            return OrgStatus::Member;
        }
        if self.guests.contains(&identity) {
            return OrgStatus::Guest;
        }
        let Some(ext) = external_id else {
            return OrgStatus::External;
        };
        if self.member_domains.iter().any(|p| p.matches(ext)) {
            OrgStatus::Member
        } else if self.guest_domains.iter().any(|p| p.matches(ext)) {
            OrgStatus::Guest
        } else if self.federated_domains.iter().any(|p| p.matches(ext)) {
            OrgStatus::Federated
        } else {
            OrgStatus::External
        }
    }

    /// Whether nothing is configured (everyone is external).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
            && self.guests.is_empty()
            && self.member_domains.is_empty()
            && self.guest_domains.is_empty()
            && self.federated_domains.is_empty()
    }
}

fn users(
    listed: &[ConfiguredUser],
    resource_id: &str,
    key: &'static str,
) -> Result<HashSet<IdentityId>, ForeignConfiguredUser> {
    listed
        .iter()
        .map(|u| {
            if u.resource.eq_ignore_ascii_case(resource_id) {
                Ok(u.id)
            } else {
                Err(ForeignConfiguredUser {
                    key,
                    raw: u.id.raw(&u.resource),
                    resource: u.resource.clone(),
                    expected: resource_id.to_owned(),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RES: &str = "1b2c3d4e-0000-4000-8000-000000000001";

    fn pattern(s: &str) -> ExternalIdPattern {
        ExternalIdPattern::try_from(s.to_owned()).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn user(id: IdentityId) -> ConfiguredUser {
        ConfiguredUser::try_from(id.raw(RES)).expect("well formed")
    }

    fn someone() -> IdentityId {
        IdentityId(Uuid::new_v4())
    }

    #[test]
    fn patterns_match_domains_case_insensitively_and_nothing_else() {
        let at = pattern("*@contoso.com");
        for yes in ["ada@contoso.com", "Ada@CONTOSO.com", "a@Contoso.Com"] {
            assert!(at.matches(yes), "{yes}");
        }
        for no in ["@contoso.com", "ada@notcontoso.com", "ada@contoso.com.evil", "ada@eu.contoso.com", "contoso.com"] {
            assert!(!at.matches(no), "{no}");
        }
        let sub = pattern("*.contoso.com");
        assert!(sub.matches("ada@eu.contoso.com"));
        assert!(!sub.matches("ada@contoso.com"), "a subdomain pattern is not the domain itself");
        assert!(!sub.matches("ada@eucontoso.com"));
        let exact = pattern("Ops@Contoso.com");
        assert!(exact.matches("ops@contoso.com"));
        assert!(!exact.matches("xops@contoso.com"));
        // Only ASCII folds: the Kelvin sign lowercases to k in Unicode, but must not match.
        assert!(!pattern("*@k.example").matches("ada@\u{212A}.example"));
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for bad in ["", "*", "*contoso.com", "*@", "*.", "ada@*.com", "**@x.com", "a b@x.com", "x\u{7}@y", "@x*"] {
            let e = ExternalIdPattern::try_from(bad.to_owned()).expect_err(bad);
            assert!(e.contains("externalId pattern"), "{bad}: {e}");
        }
        assert!(ExternalIdPattern::try_from("x".repeat(MAX_PATTERN_LEN + 1)).is_err());
    }

    #[test]
    fn configured_users_must_be_raw_ids_of_this_resource() {
        let id = someone();
        let parsed = ConfiguredUser::try_from(id.raw(RES)).expect("ours");
        assert_eq!((parsed.id(), parsed.resource()), (id, RES));
        for bad in ["", "8:acs:", "8:acs:_x", "4:+14255550123", "8:acs:res_not-a-uuid", id.0.to_string().as_str()] {
            assert!(ConfiguredUser::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        let foreign = ConfiguredUser::try_from(format!("8:acs:other_{}", id.0)).expect("well formed");
        let lists = OrgLists {
            members: &[],
            member_domains: &[],
            guests: std::slice::from_ref(&foreign),
            guest_domains: &[],
            federated_domains: &[],
        };
        let e = OrgPolicy::new(lists, RES).expect_err("foreign resource");
        assert_eq!(e.key, "organization.guests");
        assert!(e.to_string().contains("organization.guests"), "{e}");
    }

    #[test]
    fn lists_win_over_domains_and_members_win_over_guests() {
        let (listed_member, listed_guest, listed_both, domain_only) = (someone(), someone(), someone(), someone());
        let members = [user(listed_member), user(listed_both)];
        let guests = [user(listed_guest), user(listed_both)];
        let member_domains = [pattern("*@contoso.com")];
        let guest_domains = [pattern("*@contoso.com"), pattern("*@partner.example")];
        let federated_domains = [pattern("*@fabrikam.com"), pattern("*@partner.example")];
        let policy = OrgPolicy::new(
            OrgLists {
                members: &members,
                member_domains: &member_domains,
                guests: &guests,
                guest_domains: &guest_domains,
                federated_domains: &federated_domains,
            },
            RES,
        )
        .expect("valid");
        let cases = [
            (listed_member, None, OrgStatus::Member),
            (listed_member, Some("x@fabrikam.com"), OrgStatus::Member),
            (listed_guest, Some("ada@contoso.com"), OrgStatus::Guest),
            (listed_both, None, OrgStatus::Member),
            (domain_only, Some("ada@CONTOSO.com"), OrgStatus::Member),
            (domain_only, Some("bob@partner.example"), OrgStatus::Guest),
            (domain_only, Some("eve@fabrikam.com"), OrgStatus::Federated),
            (domain_only, Some("mallory@example.org"), OrgStatus::External),
            (domain_only, None, OrgStatus::External),
        ];
        for (id, ext, expected) in cases {
            assert_eq!(policy.classify(id, ext), expected, "{ext:?}");
        }
        assert!(!policy.is_empty());
        assert!(OrgPolicy::default().is_empty());
        assert_eq!(OrgPolicy::default().classify(listed_member, Some("ada@contoso.com")), OrgStatus::External);
    }

    #[test]
    fn claims_round_trip_and_unknown_claims_are_external() {
        for status in [OrgStatus::Member, OrgStatus::Guest, OrgStatus::Federated, OrgStatus::External] {
            assert_eq!(OrgStatus::from_claim(status.claim()), status);
        }
        assert_eq!(OrgStatus::External.claim(), None);
        assert_eq!(OrgStatus::from_claim(Some("admin")), OrgStatus::External);
        assert_eq!(OrgStatus::from_claim(Some("Member")), OrgStatus::External, "claims are exact");
    }
}
