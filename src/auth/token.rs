//! Access tokens: scopes, the `TokenIssuer` (used by the identity API and the CLI) and the
//! `TokenVerifier` (used by every join path). A token is an ES256 JWT whose claims carry the
//! identity, its scopes and the revocation generation it was issued under; the verifier compares
//! that generation with the identity's current one, so revocation and deletion act at once.
//!
//! A token also carries the identity's standing toward the organization (`org`: member, guest,
//! federated; absent for external identities), decided by the `OrgPolicy` when it is issued, so
//! a meeting join decides who skips the lobby without a lookup.

use super::keys::{KeyError, KeyRing};
use crate::identity::{IdentityDirectory, IdentityId};
use crate::metrics::TokenMetrics;
use crate::organization::{OrgPolicy, OrgStatus};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Longest token accepted for verification; real ones are about 600 bytes.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Allowed token lifetime, minutes (ACS: 60–1440).
pub const MIN_LIFETIME_MINUTES: u32 = 60;
pub const MAX_LIFETIME_MINUTES: u32 = 1440;

/// A set of ACS scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Scopes(u8);

pub const SCOPE_NAMES: [(&str, Scopes); 5] = [
    ("voip", Scopes::VOIP),
    ("voip.join", Scopes::VOIP_JOIN),
    ("chat", Scopes::CHAT),
    ("chat.join", Scopes::CHAT_JOIN),
    ("chat.join.limited", Scopes::CHAT_JOIN_LIMITED),
];

/// What a token is being used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create a call or room session, or call someone (`voip`).
    StartCall,
    /// Join an existing call, room or meeting (`voip` or `voip.join`).
    JoinCall,
    /// Chat (`chat*`); grants no media.
    Chat,
}

/// A scope name that is not one of the ACS scopes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}` (allowed: voip, voip.join, chat, chat.join, chat.join.limited)")]
pub struct UnknownScope(pub String);

impl Scopes {
    pub const VOIP: Scopes = Scopes(1);
    pub const VOIP_JOIN: Scopes = Scopes(2);
    pub const CHAT: Scopes = Scopes(4);
    pub const CHAT_JOIN: Scopes = Scopes(8);
    pub const CHAT_JOIN_LIMITED: Scopes = Scopes(16);

    /// Parse scope names (as the API and CLI receive them).
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Scopes, UnknownScope> {
        let mut set = Scopes::default();
        for name in names {
            let name = name.trim();
            let (_, scope) = SCOPE_NAMES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .ok_or_else(|| UnknownScope(name.to_owned()))?;
            set.0 |= scope.0;
        }
        Ok(set)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Scopes) -> bool {
        self.0 & other.0 == other.0
    }

    /// Scope names in canonical order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        SCOPE_NAMES.iter().filter(move |(_, s)| self.contains(*s)).map(|(n, _)| *n)
    }

    /// Whether these scopes permit `action`.
    pub fn allows(self, action: Action) -> bool {
        match action {
            Action::StartCall => self.contains(Scopes::VOIP),
            Action::JoinCall => self.contains(Scopes::VOIP) || self.contains(Scopes::VOIP_JOIN),
            Action::Chat => (self.0 & (Scopes::CHAT.0 | Scopes::CHAT_JOIN.0 | Scopes::CHAT_JOIN_LIMITED.0)) != 0,
        }
    }
}

/// A lifetime in the allowed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLifetime(u32);

/// A lifetime outside 60–1440 minutes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expiresInMinutes must be between 60 and 1440, got {0}")]
pub struct LifetimeOutOfRange(pub i64);

impl TokenLifetime {
    pub fn from_minutes(minutes: i64) -> Result<Self, LifetimeOutOfRange> {
        match u32::try_from(minutes) {
            Ok(m) if (MIN_LIFETIME_MINUTES..=MAX_LIFETIME_MINUTES).contains(&m) => Ok(Self(m)),
            _ => Err(LifetimeOutOfRange(minutes)),
        }
    }

    pub fn minutes(self) -> u32 {
        self.0
    }
}

/// The JWT claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The identity's raw ID.
    pub sub: String,
    /// The identity as ACS tokens name it (`acs:<resourceId>_<uuid>`).
    pub skypeid: String,
    /// Space-separated scopes.
    pub scp: String,
    /// Comma-separated scopes, as in ACS tokens.
    #[serde(rename = "acsScope")]
    pub acs_scope: String,
    pub iat: i64,
    pub exp: i64,
    #[serde(rename = "resourceId")]
    pub resource_id: String,
    /// Revocation generation the token was issued under.
    pub rgen: u32,
    /// The identity's standing toward the organization when the token was issued: `member`,
    /// `guest` or `federated`; absent for external identities (and in tokens issued before the
    /// claim existed, which read as external).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

/// A token handed to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    /// Unix seconds.
    pub expires_on: i64,
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    #[error("identity not found")]
    UnknownIdentity,
    #[error("at least one scope is required")]
    NoScopes,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Issues access tokens.
pub struct TokenIssuer {
    keys: Arc<KeyRing>,
    directory: Arc<IdentityDirectory>,
    resource_id: String,
    /// Decides the `org` claim. Required, so no issue path can forget it.
    org: Arc<OrgPolicy>,
}

impl TokenIssuer {
    pub fn new(
        keys: Arc<KeyRing>,
        directory: Arc<IdentityDirectory>,
        resource_id: String,
        org: Arc<OrgPolicy>,
    ) -> Self {
        Self { keys, directory, resource_id, org }
    }

    /// Issue a token for a live identity, with its organization standing as of now. `now` is
    /// unix seconds.
    pub fn issue(
        &self,
        id: IdentityId,
        scopes: Scopes,
        lifetime: TokenLifetime,
        now: i64,
    ) -> Result<IssuedToken, IssueError> {
        if scopes.is_empty() {
            return Err(IssueError::NoScopes);
        }
        let grant =
            self.directory.note_token_issued(id, now.saturating_mul(1000))?.ok_or(IssueError::UnknownIdentity)?;
        let org = self.org.classify(id, grant.external_id.as_deref());
        let exp = now + i64::from(lifetime.minutes()) * 60;
        let names: Vec<&str> = scopes.names().collect();
        let raw = id.raw(&self.resource_id);
        let claims = Claims {
            skypeid: raw.trim_start_matches("8:").to_owned(),
            sub: raw,
            scp: names.join(" "),
            acs_scope: names.join(","),
            iat: now,
            exp,
            resource_id: self.resource_id.clone(),
            rgen: grant.generation,
            org: org.claim().map(str::to_owned),
        };
        let value = serde_json::to_value(&claims).expect("Claims has only string and integer fields");
        let token = self.keys.current().sign_jwt(&value)?;
        Ok(IssuedToken { token, expires_on: exp })
    }
}

/// Why a token was refused. `reason()` is the metrics label, `code()` the client error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("token is signed with an unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("token is signed by an unknown key")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued for another resource")]
    WrongResource,
    #[error("token scopes do not allow this action")]
    InsufficientScope,
    #[error("token has been revoked")]
    Revoked,
    #[error("token's identity has been deleted")]
    IdentityDeleted,
    #[error("token store unavailable")]
    Store,
}

impl TokenError {
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::UnsupportedAlgorithm => "unsupported_algorithm",
            TokenError::UnknownKey => "unknown_key",
            TokenError::BadSignature => "bad_signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::WrongResource => "wrong_resource",
            TokenError::InsufficientScope => "insufficient_scope",
            TokenError::Revoked => "revoked",
            TokenError::IdentityDeleted => "identity_deleted",
            TokenError::Store => "store_error",
        }
    }

    /// Machine-readable error code sent to clients.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Expired | TokenError::NotYetValid => "TokenExpired",
            TokenError::InsufficientScope => "TokenScopeInsufficient",
            TokenError::Revoked | TokenError::IdentityDeleted => "TokenRevoked",
            TokenError::Store => "ServiceUnavailable",
            _ => "TokenInvalid",
        }
    }
}

/// A token that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub identity: IdentityId,
    /// The identity's raw ID (`8:acs:...`).
    pub raw_id: String,
    pub scopes: Scopes,
    /// Unix seconds.
    pub expires_at: i64,
    pub generation: u32,
    /// From the `org` claim; `External` when the token has none.
    pub org: OrgStatus,
}

#[derive(Deserialize)]
struct Header<'a> {
    alg: &'a str,
    kid: Option<String>,
}

/// Verifies access tokens: signature, expiry, resource, scope and revocation.
pub struct TokenVerifier {
    keys: Arc<KeyRing>,
    directory: Arc<IdentityDirectory>,
    resource_id: String,
    leeway_secs: i64,
    ok: IntCounter,
    results: prometheus::IntCounterVec,
}

impl TokenVerifier {
    pub fn new(
        keys: Arc<KeyRing>,
        directory: Arc<IdentityDirectory>,
        resource_id: String,
        leeway_secs: u64,
        metrics: &TokenMetrics,
    ) -> Self {
        Self {
            keys,
            directory,
            resource_id,
            leeway_secs: i64::try_from(leeway_secs).unwrap_or(i64::MAX),
            ok: metrics.validations.with_label_values(&["ok"]),
            results: metrics.validations.clone(),
        }
    }

    /// How long after `exp` a token is still accepted.
    pub fn leeway_secs(&self) -> i64 {
        self.leeway_secs
    }

    /// Verify `token` for `action` at `now` (unix seconds). Counts the result.
    pub fn verify(&self, token: &str, action: Action, now: i64) -> Result<VerifiedToken, TokenError> {
        let result = self.check(token, action, now);
        match &result {
            Ok(_) => self.ok.inc(),
            Err(e) => self.results.with_label_values(&[e.reason()]).inc(),
        }
        result
    }

    fn check(&self, token: &str, action: Action, now: i64) -> Result<VerifiedToken, TokenError> {
        let claims = self.verified_claims(token)?;
        if claims.exp.saturating_add(self.leeway_secs) <= now {
            return Err(TokenError::Expired);
        }
        if claims.iat.saturating_sub(self.leeway_secs) > now {
            return Err(TokenError::NotYetValid);
        }
        if claims.resource_id != self.resource_id {
            return Err(TokenError::WrongResource);
        }
        let identity =
            IdentityId::parse_raw(&claims.sub, &self.resource_id).map_err(|_| TokenError::Malformed("sub"))?;
        let scopes =
            Scopes::parse(claims.scp.split(' ').filter(|s| !s.is_empty())).map_err(|_| TokenError::Malformed("scp"))?;
        if !scopes.allows(action) {
            return Err(TokenError::InsufficientScope);
        }
        match self.directory.current_generation(identity) {
            Err(_) => Err(TokenError::Store),
            Ok(None) => Err(TokenError::IdentityDeleted),
            Ok(Some(current)) if claims.rgen < current => Err(TokenError::Revoked),
            Ok(Some(_)) => Ok(VerifiedToken {
                identity,
                raw_id: claims.sub,
                scopes,
                expires_at: claims.exp,
                generation: claims.rgen,
                org: OrgStatus::from_claim(claims.org.as_deref()),
            }),
        }
    }

    /// Check the signature and decode the claims (no time, scope or revocation checks).
    fn verified_claims(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let (signing_input, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed("not a JWT"))?;
        let (header, payload) = signing_input.split_once('.').ok_or(TokenError::Malformed("not a JWT"))?;
        let header_bytes = B64URL.decode(header).map_err(|_| TokenError::Malformed("header encoding"))?;
        let header: Header<'_> =
            serde_json::from_slice(&header_bytes).map_err(|_| TokenError::Malformed("header JSON"))?;
        if header.alg != "ES256" {
            return Err(TokenError::UnsupportedAlgorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let signature = B64URL.decode(signature).map_err(|_| TokenError::Malformed("signature encoding"))?;
        match self.keys.verify(&kid, signing_input.as_bytes(), &signature) {
            None => return Err(TokenError::UnknownKey),
            Some(false) => return Err(TokenError::BadSignature),
            Some(true) => {}
        }
        let payload = B64URL.decode(payload).map_err(|_| TokenError::Malformed("payload encoding"))?;
        serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed("claims"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::SigningKey;
    use crate::metrics::Metrics;
    use crate::store::Store;

    const RES: &str = "11111111-2222-4333-8444-555555555555";
    const NOW: i64 = 1_800_000_000;

    struct Fixture {
        keys: Arc<KeyRing>,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        directory: Arc<IdentityDirectory>,
        metrics: Metrics,
    }

    fn fixture() -> Fixture {
        let key = SigningKey::from_pem(SigningKey::generate_pem().expect("gen").as_bytes(), "k").expect("parse");
        let keys = Arc::new(KeyRing::new(key, vec![]));
        let directory = Arc::new(IdentityDirectory::new(Store::open_in_memory().expect("db")));
        let metrics = Metrics::new();
        let issuer = TokenIssuer::new(keys.clone(), directory.clone(), RES.to_owned(), Arc::default());
        let verifier = TokenVerifier::new(keys.clone(), directory.clone(), RES.to_owned(), 30, &metrics.tokens);
        Fixture { keys, issuer, verifier, directory, metrics }
    }

    fn new_identity(f: &Fixture) -> IdentityId {
        IdentityId(f.directory.create(None, 0).expect("create").0.id)
    }

    fn hour() -> TokenLifetime {
        TokenLifetime::from_minutes(60).expect("in range")
    }

    #[test]
    fn scopes_parse_and_allow() {
        let s = Scopes::parse(["voip", "CHAT"]).expect("valid");
        assert_eq!(s.names().collect::<Vec<_>>(), ["voip", "chat"]);
        assert!(s.allows(Action::StartCall) && s.allows(Action::JoinCall) && s.allows(Action::Chat));
        let join = Scopes::parse(["voip.join"]).expect("valid");
        assert!(!join.allows(Action::StartCall) && join.allows(Action::JoinCall));
        let chat = Scopes::parse(["chat.join.limited"]).expect("valid");
        assert!(!chat.allows(Action::JoinCall) && chat.allows(Action::Chat));
        assert_eq!(Scopes::parse(["voip", "video"]), Err(UnknownScope("video".into())));
    }

    #[test]
    fn lifetime_bounds() {
        assert!(TokenLifetime::from_minutes(59).is_err());
        assert!(TokenLifetime::from_minutes(60).is_ok());
        assert!(TokenLifetime::from_minutes(1440).is_ok());
        assert!(TokenLifetime::from_minutes(1441).is_err());
        assert!(TokenLifetime::from_minutes(-5).is_err());
    }

    #[test]
    fn issued_token_verifies_until_expiry() {
        let f = fixture();
        let id = new_identity(&f);
        let t = f.issuer.issue(id, Scopes::VOIP, hour(), NOW).expect("issue");
        assert_eq!(t.expires_on, NOW + 3600);
        let v = f.verifier.verify(&t.token, Action::StartCall, NOW + 10).expect("valid");
        assert_eq!(v.identity, id);
        assert!(v.raw_id.starts_with("8:acs:"));
        assert_eq!(f.verifier.verify(&t.token, Action::JoinCall, NOW + 3600 + 29).map(|v| v.identity), Ok(id));
        assert_eq!(f.verifier.verify(&t.token, Action::JoinCall, NOW + 3600 + 30), Err(TokenError::Expired));
        assert_eq!(f.verifier.verify(&t.token, Action::JoinCall, NOW - 31), Err(TokenError::NotYetValid));
        let text = f.metrics.render();
        assert!(text.contains("switchboard_token_validations_total{result=\"expired\"} 1"), "{text}");
    }

    #[test]
    fn scope_is_enforced() {
        let f = fixture();
        let id = new_identity(&f);
        let join = f.issuer.issue(id, Scopes::VOIP_JOIN, hour(), NOW).expect("issue");
        assert!(f.verifier.verify(&join.token, Action::JoinCall, NOW).is_ok());
        assert_eq!(f.verifier.verify(&join.token, Action::StartCall, NOW), Err(TokenError::InsufficientScope));
        let chat = f.issuer.issue(id, Scopes::CHAT, hour(), NOW).expect("issue");
        assert_eq!(f.verifier.verify(&chat.token, Action::JoinCall, NOW), Err(TokenError::InsufficientScope));
        assert!(matches!(f.issuer.issue(id, Scopes::default(), hour(), NOW), Err(IssueError::NoScopes)));
    }

    #[test]
    fn revocation_and_deletion_act_immediately() {
        let f = fixture();
        let id = new_identity(&f);
        let old = f.issuer.issue(id, Scopes::VOIP, hour(), NOW).expect("issue");
        assert!(f.directory.revoke_tokens(id).expect("revoke"));
        assert_eq!(f.verifier.verify(&old.token, Action::JoinCall, NOW), Err(TokenError::Revoked));
        // Issued in the same second as the revocation, after it: valid.
        let new = f.issuer.issue(id, Scopes::VOIP, hour(), NOW).expect("issue");
        assert!(f.verifier.verify(&new.token, Action::JoinCall, NOW).is_ok());
        assert!(f.directory.delete(id).expect("delete"));
        assert_eq!(f.verifier.verify(&new.token, Action::JoinCall, NOW), Err(TokenError::IdentityDeleted));
        assert!(matches!(f.issuer.issue(id, Scopes::VOIP, hour(), NOW), Err(IssueError::UnknownIdentity)));
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let f = fixture();
        let other = fixture();
        let id = new_identity(&f);
        let t = f.issuer.issue(id, Scopes::VOIP, hour(), NOW).expect("issue").token;
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(&parts[1]).expect("b64")).expect("json");
        claims["scp"] = "voip chat".into();
        parts[1] = B64URL.encode(claims.to_string());
        assert_eq!(f.verifier.verify(&parts.join("."), Action::JoinCall, NOW), Err(TokenError::BadSignature));
        assert_eq!(other.verifier.verify(&t, Action::JoinCall, NOW), Err(TokenError::UnknownKey));
        for garbage in ["", "a", "a.b", "a.b.c", "....", "\u{0}.\u{1}.\u{2}"] {
            assert!(matches!(f.verifier.verify(garbage, Action::JoinCall, NOW), Err(TokenError::Malformed(_))));
        }
        let none_alg = format!("{}.{}.", B64URL.encode(r#"{"alg":"none","kid":"x"}"#), parts[1]);
        assert_eq!(f.verifier.verify(&none_alg, Action::JoinCall, NOW), Err(TokenError::UnsupportedAlgorithm));
        assert!(f.verifier.verify(&"a".repeat(MAX_TOKEN_LEN + 1), Action::JoinCall, NOW).is_err());
    }

    /// Decode a token's claims without verifying it (tests look inside).
    fn claims_of(token: &str) -> serde_json::Value {
        let payload = token.split('.').nth(1).expect("a JWT has a payload");
        serde_json::from_slice(&B64URL.decode(payload).expect("b64")).expect("json")
    }

    #[test]
    fn org_claim_is_decided_at_issue_and_returned_by_the_verifier() {
        use crate::organization::{ConfiguredUser, ExternalIdPattern, OrgLists};
        let f = fixture();
        let create = |ext: Option<&str>| IdentityId(f.directory.create(ext, 0).expect("create").0.id);
        let (listed_member, listed_guest) = (create(Some("ada@fabrikam.com")), create(None));
        let pattern = |s: &str| ExternalIdPattern::try_from(s.to_owned()).expect("valid pattern");
        let user = |id: IdentityId| ConfiguredUser::try_from(id.raw(RES)).expect("raw ID");
        let (members, guests) = ([user(listed_member)], [user(listed_guest)]);
        let (member_domains, federated_domains) = ([pattern("*@contoso.com")], [pattern("*@fabrikam.com")]);
        let lists = OrgLists {
            members: &members,
            member_domains: &member_domains,
            guests: &guests,
            guest_domains: &[],
            federated_domains: &federated_domains,
        };
        let policy = Arc::new(OrgPolicy::new(lists, RES).expect("policy"));
        let issuer = TokenIssuer::new(f.keys.clone(), f.directory.clone(), RES.to_owned(), policy);
        let cases = [
            (listed_member, Some("member"), OrgStatus::Member),
            (listed_guest, Some("guest"), OrgStatus::Guest),
            (create(Some("bob@Contoso.COM")), Some("member"), OrgStatus::Member),
            (create(Some("eve@fabrikam.com")), Some("federated"), OrgStatus::Federated),
            (create(Some("mallory@example.org")), None, OrgStatus::External),
            (create(None), None, OrgStatus::External),
        ];
        for (id, claim, status) in cases {
            let t = issuer.issue(id, Scopes::VOIP, hour(), NOW).expect("issue");
            assert_eq!(claims_of(&t.token).get("org").and_then(|v| v.as_str()), claim, "{status:?}");
            assert_eq!(f.verifier.verify(&t.token, Action::JoinCall, NOW).map(|v| v.org), Ok(status));
        }
        // The same identity through the issuer without a policy: external.
        let t = f.issuer.issue(listed_member, Scopes::VOIP, hour(), NOW).expect("issue");
        assert_eq!(f.verifier.verify(&t.token, Action::JoinCall, NOW).map(|v| v.org), Ok(OrgStatus::External));
    }

    #[test]
    fn tokens_without_an_org_claim_verify_as_external() {
        // A token as issued before the claim existed: the same claims minus `org`, signed by the
        // server's key.
        let f = fixture();
        let id = new_identity(&f);
        let t = f.issuer.issue(id, Scopes::VOIP, hour(), NOW).expect("issue");
        let claims = claims_of(&t.token);
        assert!(claims.get("org").is_none(), "external: no claim at all");
        let old: Claims = serde_json::from_value(claims).expect("claims without org parse");
        assert_eq!(old.org, None);
        let v = f.verifier.verify(&t.token, Action::JoinCall, NOW).expect("valid");
        assert_eq!(v.org, OrgStatus::External);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_strings_never_verify_or_panic(s in ".{0,600}") {
            let f = fixture();
            proptest::prop_assert!(f.verifier.verify(&s, Action::JoinCall, NOW).is_err());
        }
    }
}
