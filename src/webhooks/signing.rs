//! The `Authorization: Bearer <JWT>` of a delivery: ES256, signed by the server's current token
//! signing key (`kid` in the header names it in `/.well-known/jwks.json`), bound to the callback
//! URI (`aud`) and to the exact body (`body_sha256`), and short-lived, so a captured token can be
//! replayed neither onto another body nor to another receiver, nor for long.

use crate::auth::{KeyError, KeyRing};
use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::json;

/// How long a delivery token is valid after it is made (each attempt makes a fresh one).
pub const DELIVERY_TOKEN_LIFETIME_SECS: i64 = 300;

/// base64url (no padding) of the SHA-256 of `body`: the `body_sha256` claim.
pub fn body_sha256(body: &[u8]) -> String {
    B64URL.encode(digest::digest(&digest::SHA256, body).as_ref())
}

/// The claims of a delivery token: `iss`, `aud`, `iat`, `nbf`, `exp`, `body_sha256`.
pub fn delivery_claims(issuer: &str, audience: &str, body: &[u8], now_unix: i64) -> serde_json::Value {
    json!({
        "iss": issuer,
        "aud": audience,
        "iat": now_unix,
        "nbf": now_unix,
        "exp": now_unix + DELIVERY_TOKEN_LIFETIME_SECS,
        "body_sha256": body_sha256(body),
    })
}

/// Sign a delivery of `body` to `audience` with the ring's current key.
pub fn sign_delivery(
    keys: &KeyRing,
    issuer: &str,
    audience: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<String, KeyError> {
    keys.current().sign_jwt(&delivery_claims(issuer, audience, body, now_unix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SigningKey;

    #[test]
    fn token_verifies_with_the_ring_and_binds_body_and_audience() {
        let pem = SigningKey::generate_pem().expect("generate");
        let ring = KeyRing::new(SigningKey::from_pem(pem.as_bytes(), "t").expect("parse"), vec![]);
        let body = br#"[{"id":"1"}]"#;
        let jwt =
            sign_delivery(&ring, "https://sfu.example.com/", "https://app.example.com/cb", body, 1000).expect("sign");
        let mut parts = jwt.split('.');
        let (h, c, s) = (parts.next().expect("h"), parts.next().expect("c"), parts.next().expect("s"));
        let header: serde_json::Value = serde_json::from_slice(&B64URL.decode(h).expect("b64")).expect("json");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["kid"], ring.current().kid());
        let claims: serde_json::Value = serde_json::from_slice(&B64URL.decode(c).expect("b64")).expect("json");
        assert_eq!(claims["iss"], "https://sfu.example.com/");
        assert_eq!(claims["aud"], "https://app.example.com/cb");
        assert_eq!(claims["iat"], 1000);
        assert_eq!(claims["exp"], 1300);
        assert_eq!(claims["body_sha256"], body_sha256(body));
        assert_ne!(claims["body_sha256"], body_sha256(b"[]"));
        let sig = B64URL.decode(s).expect("b64");
        let kid = header["kid"].as_str().expect("kid");
        assert_eq!(ring.verify(kid, format!("{h}.{c}").as_bytes(), &sig), Some(true));
    }

    #[test]
    fn body_hash_is_base64url_sha256() {
        // SHA-256("abc") = ba7816bf...f20015ad
        assert_eq!(body_sha256(b"abc"), "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
    }
}
