//! Access tokens as clients present them (`auth::token`, `TokenVerifier::verify`): the compact
//! JWS split, base64url, the header JSON (`alg`, `kid`), the ES256 signature, the claims JSON,
//! expiry and not-before with leeway, the resource, the raw identity ID (`IdentityId::parse_raw`),
//! the scopes and the revocation generation (an in-memory store). A random token cannot get past
//! the signature, so the target also signs what it is given with the trusted key, which takes
//! arbitrary headers and claims through every later check. Whatever verifies must name the one
//! identity that exists, allow the action, and not have expired.
//!
//! Input: one byte (its low bit: the token as is, or header and claims to sign; the next bits:
//! the action), then the token, or the claims (or the header, a 0 byte, then the claims). In
//! claims, `$SUB`, `$RES` and `$RGEN` stand for the identity, the resource and its generation.

#![no_main]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, LazyLock};
use switchboard::auth::{Action, KeyRing, SigningKey, TokenVerifier};
use switchboard::identity::{IdentityDirectory, IdentityId};
use switchboard::metrics::Metrics;
use switchboard::store::Store;

/// A throwaway P-256 key that nothing but this target trusts.
const PEM: &str = include_str!("../fuzz_signing_key.pem");
const RES: &str = "11111111-2222-4333-8444-555555555555";
/// Unix seconds the target verifies at (the seeds' `iat`/`exp` are around it).
const NOW: i64 = 1_800_000_000;
const LEEWAY: i64 = 30;

struct Fixture {
    verifier: TokenVerifier,
    identity: IdentityId,
    pair: EcdsaKeyPair,
    kid: String,
    _metrics: Metrics,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let key = SigningKey::from_pem(PEM.as_bytes(), "fuzz").expect("the fuzz key parses");
    let kid = key.kid().to_owned();
    let keys = Arc::new(KeyRing::new(key, vec![]));
    let directory = Arc::new(IdentityDirectory::new(Store::open_in_memory().expect("in-memory store")));
    let identity = IdentityId(directory.create(None, 0).expect("an identity").0.id);
    let metrics = Metrics::new();
    let verifier = TokenVerifier::new(keys, directory, RES.to_owned(), LEEWAY as u64, &metrics.tokens);
    let der: String = PEM.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = B64.decode(der).expect("PEM base64");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der).expect("PKCS#8 P-256");
    Fixture { verifier, identity, pair, kid, _metrics: metrics }
});

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else { return };
    let action = [Action::StartCall, Action::JoinCall, Action::Chat][usize::from(mode >> 1) % 3];
    let token = if mode & 1 == 0 {
        // Tokens arrive in JSON strings: always UTF-8.
        let Ok(t) = std::str::from_utf8(rest) else { return };
        t.to_owned()
    } else {
        let (header, claims) = match rest.iter().position(|&b| b == 0) {
            Some(i) => (rest[..i].to_vec(), &rest[i + 1..]),
            None => (format!(r#"{{"alg":"ES256","typ":"JWT","kid":"{}"}}"#, f.kid).into_bytes(), rest),
        };
        let claims = substitute(claims, f);
        let mut t = format!("{}.{}", B64URL.encode(header), B64URL.encode(claims));
        let sig = f.pair.sign(&SystemRandom::new(), t.as_bytes()).expect("signing");
        t.push('.');
        t.push_str(&B64URL.encode(sig.as_ref()));
        t
    };
    let Ok(v) = f.verifier.verify(&token, action, NOW) else { return };
    assert_eq!(v.identity, f.identity, "only the one identity that exists verifies");
    assert_eq!(v.raw_id.to_ascii_lowercase(), f.identity.raw(RES).to_ascii_lowercase());
    assert!(v.scopes.allows(action), "the scopes allow the action");
    assert!(v.expires_at.saturating_add(LEEWAY) > NOW, "not expired");
});

/// Replace the placeholders with the fixture's values.
fn substitute(claims: &[u8], f: &Fixture) -> Vec<u8> {
    let raw = f.identity.raw(RES);
    let mut out = Vec::with_capacity(claims.len() + 64);
    let mut i = 0;
    while i < claims.len() {
        let rest = &claims[i..];
        let (with, skip): (&[u8], usize) = if rest.starts_with(b"$SUB") {
            (raw.as_bytes(), 4)
        } else if rest.starts_with(b"$RES") {
            (RES.as_bytes(), 4)
        } else if rest.starts_with(b"$RGEN") {
            (b"0", 5)
        } else {
            (&rest[..1], 1)
        };
        out.extend_from_slice(with);
        i += skip;
    }
    out
}
