//! What every join pays: verifying an access token (ES256 signature, claims, scope and the
//! revocation generation lookup). Also the HMAC check every management call pays.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use switchboard::auth::hmac::{HmacVerifier, SignedRequest, sign_request};
use switchboard::auth::{Action, KeyRing, Scopes, SigningKey, TokenIssuer, TokenLifetime, TokenVerifier};
use switchboard::identity::{IdentityDirectory, IdentityId};
use switchboard::metrics::Metrics;
use switchboard::store::Store;

const RESOURCE: &str = "11111111-2222-4333-8444-555555555555";

fn token_verification(c: &mut Criterion) {
    let key = SigningKey::from_pem(SigningKey::generate_pem().expect("keygen").as_bytes(), "bench").expect("key");
    let keys = Arc::new(KeyRing::new(key, vec![]));
    let directory = Arc::new(IdentityDirectory::new(Store::open_in_memory().expect("db")));
    let metrics = Metrics::new();
    let issuer = TokenIssuer::new(keys.clone(), directory.clone(), RESOURCE.to_owned(), Arc::default());
    let verifier = TokenVerifier::new(keys, directory.clone(), RESOURCE.to_owned(), 30, &metrics.tokens);
    let id = IdentityId(directory.create(None, 0).expect("identity").0.id);
    let now = 1_800_000_000;
    let token =
        issuer.issue(id, Scopes::VOIP, TokenLifetime::from_minutes(60).expect("valid"), now).expect("token").token;
    verifier.verify(&token, Action::JoinCall, now).expect("valid token");

    c.bench_function("token_verify/valid", |b| {
        b.iter(|| verifier.verify(black_box(&token), Action::JoinCall, now).expect("valid"))
    });
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    c.bench_function("token_verify/bad_signature", |b| {
        b.iter(|| verifier.verify(black_box(&forged), Action::JoinCall, now).expect_err("forged"))
    });
    c.bench_function("token_issue", |b| {
        b.iter(|| issuer.issue(id, Scopes::VOIP, TokenLifetime::from_minutes(60).expect("valid"), now).expect("issue"))
    });
}

fn hmac_verification(c: &mut Criterion) {
    let key = [7u8; 64];
    let verifier = HmacVerifier::new(&[key], Duration::from_secs(300));
    let body = br#"{"scopes":["voip"],"expiresInMinutes":60}"#;
    let path = "/identities/8%3Aacs%3Ax_y/:issueAccessToken?api-version=2023-10-01";
    let now = SystemTime::now();
    let mut headers = axum::http::HeaderMap::new();
    for (name, value) in sign_request("POST", path, "127.0.0.1:8443", body, &key, now) {
        headers.insert(name, value.parse().expect("header value"));
    }
    c.bench_function("hmac_verify", |b| {
        b.iter(|| {
            let req =
                SignedRequest { method: "POST", path_and_query: path, host: "127.0.0.1:8443", headers: &headers, body };
            verifier.verify(black_box(&req), now).expect("valid")
        })
    });
}

criterion_group!(benches, token_verification, hmac_verification);
criterion_main!(benches);
